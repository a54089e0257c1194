"""Train LoRA adapters with mlx-lm's own code path (mlx_lm.lora.train_model)
on given token rows, writing adapters.safetensors + adapter_config.json.

usage: peer_train.py MODEL_DIR ROWS_JSON ADAPTER_DIR ITERS LEARNING_RATE [FINE_TUNE_TYPE]
ROWS_JSON: {"rows": [[token ids], ...]}
"""

import json
import sys
import types
from pathlib import Path

import mlx.core as mx
from mlx_lm.lora import CONFIG_DEFAULTS, train_model
from mlx_lm.utils import load_model


class TokenRows:
    """The dataset interface mlx-lm's trainer reads (pre-tokenized rows)."""

    def __init__(self, rows):
        self._rows = rows

    def __getitem__(self, idx):
        return self._rows[idx]

    def __len__(self):
        return len(self._rows)

    def process(self, row):
        return (row, 0)


def main():
    model_dir, rows_json, adapter_dir, iters, lr = sys.argv[1:6]
    fine_tune_type = sys.argv[6] if len(sys.argv) > 6 else "lora"
    rows = json.loads(Path(rows_json).read_text())["rows"]
    model, _ = load_model(Path(model_dir))
    args = dict(CONFIG_DEFAULTS)
    args.update(
        model=model_dir,
        train=True,
        adapter_path=adapter_dir,
        iters=int(iters),
        learning_rate=float(lr),
        batch_size=2,
        num_layers=-1,
        steps_per_report=1000,
        steps_per_eval=1000,
        save_every=1000,
        lora_parameters={"rank": 4, "dropout": 0.0, "scale": 10.0},
        fine_tune_type=fine_tune_type,
    )
    train_model(types.SimpleNamespace(**args), model, TokenRows(rows), TokenRows([]))
    mx.eval(model.parameters())


if __name__ == "__main__":
    main()
