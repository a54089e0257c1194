"""Reference ids for a small SentencePiece-style GGUF vocabulary
(`tokenizer.ggml.model` = `llama`: tokens, scores, token types, no merges),
as transformers 5.24's `convert_gguf_tokenizer` builds it (merges recovered
from the scores, byte fallback, "▁" for spaces). Its `phi3` path puts the
prefix space as llama.cpp does (before the text and after each special
token); the engine follows that one. The same vocabulary is
written by engine/tests/tokenizer_gguf.rs (`spm_vocab`); keep them in step.

    /tmp/gguf-venv/bin/python scripts/reference/gguf_spm_tokenizer_ids.py
"""

import json

from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

PIECES = [
    ("▁", -1.0), ("h", -2.0), ("e", -2.5), ("l", -3.0), ("o", -3.5), ("w", -4.0), ("r", -4.5),
    ("d", -5.0), ("▁h", -6.0), ("he", -6.5), ("ll", -7.0), ("llo", -7.5), ("▁he", -8.0),
    ("▁hello", -8.5), ("▁w", -9.0), ("or", -9.5), ("ld", -10.0), ("▁world", -10.5), ("▁▁", -11.0),
]
TEXTS = ["hello world", " hello", "hello\nworld", "héllo", "  world", "<s>hello</s>", "wold"]


def vocabulary():
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [p for p, _ in PIECES]
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [s for _, s in PIECES]
    types = [2, 3, 3] + [6] * 256 + [1] * len(PIECES)
    return tokens, scores, types


def main():
    tokens, scores, types = vocabulary()
    for arch in ["llama", "phi3"]:
        tok, _ = convert_gguf_tokenizer(arch, {
            "tokenizer_type": "llama", "tokens": tokens, "scores": scores, "token_type": types,
        })
        for text in TEXTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            print(arch, json.dumps(text, ensure_ascii=False), ids, repr(tok.decode(ids)))


if __name__ == "__main__":
    main()
