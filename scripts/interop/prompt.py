"""The prompt every side of the interop check scores: token ids of a chat turn."""
PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 2, 198, 1, 4093, 198, 10576, 314, 260, 3444, 47, 2, 198, 1, 520, 9531, 198]
