"""Runs mlx-lm's own dataset code (mlx_lm.tuner.datasets and
trainer.iterate_batches, version 0.32.2) over parity_cases.json with the
byte tokenizer of byte_tokenizer.json, and writes what it produces into
parity_expected.json for the data_parity test.

    .deps/peer-venv/bin/python engine/tests/data_fixtures/mlx_lm_parity.py

(.deps/peer-venv: `mlx[cpu]==0.32.2 mlx-lm==0.32.2`, as scripts/setup-peer.sh
installs it.)
"""

import json
import types
from pathlib import Path

from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast
from mlx_lm.tuner.datasets import CacheDataset, create_dataset
from mlx_lm.tuner.trainer import iterate_batches

here = Path(__file__).parent
out = []
for case in json.loads((here / "parity_cases.json").read_text()):
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(here / "byte_tokenizer.json"),
        bos_token=case.get("bos_token"),
        eos_token=case["eos_token"],
    )
    if case.get("template"):
        tokenizer.chat_template = case["template"]
    if case.get("add_bos_token"):
        bos = case["bos_token"]
        tokenizer._tokenizer.post_processor = TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))]
        )
    config = types.SimpleNamespace(mask_prompt=case["mask_prompt"])
    dataset = CacheDataset(create_dataset(case["lines"], tokenizer, config))
    examples = [{"tokens": list(dataset[i][0]), "offset": dataset[i][1]} for i in range(len(dataset))]
    batches = []
    # Batches from the processed list: given a CacheDataset (as mlx_lm.lora
    # passes it), iterate_batches 0.32.2 sorts by `len()` of the raw JSON
    # object (its key count), not by token count, so it keeps file order.
    # The list path sorts by token length, which is what it means to do.
    processed = [dataset[i] for i in range(len(dataset))]
    # iterate_batches refuses a dataset smaller than the batch.
    for batch, lengths in iterate_batches(processed, 2, 2048, seed=0) if len(processed) >= 2 else []:
        batches.append(
            {
                "tokens": batch.tolist(),
                "offsets": [int(o) for o, _ in lengths.tolist()],
                "lengths": [int(n) for _, n in lengths.tolist()],
            }
        )
    # mlx-lm visits batches in a random order; compare them sorted.
    batches.sort(key=lambda b: b["lengths"])
    out.append({"name": case["name"], "examples": examples, "batches": batches})
(here / "parity_expected.json").write_text(json.dumps(out) + "\n")
