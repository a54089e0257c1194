"""mlx-lm's LoRA trainer on random token rows, for throughput comparison.

usage: peer_bench.py MODEL_DIR ITERS REPORT_EVERY BATCH SEQ RANK NUM_LAYERS GRAD_CHECKPOINT
Prints the last training report (mlx-lm's callback dict) as JSON.
"""

import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
from mlx_lm.lora import CONFIG_DEFAULTS, train_model
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm.utils import load_model


class TokenRows:
    def __init__(self, rows):
        self._rows = rows

    def __getitem__(self, idx):
        return self._rows[idx]

    def __len__(self):
        return len(self._rows)

    def process(self, row):
        return (row, 0)


class Last(TrainingCallback):
    def __init__(self):
        self.reports = []

    def on_train_loss_report(self, info):
        self.reports.append(info)


def main():
    model_dir, iters, every, batch, seq, rank, layers, grad_checkpoint = sys.argv[1:9]
    model, config = load_model(Path(model_dir))
    rng = np.random.default_rng(0)
    rows = [
        rng.integers(1, config["vocab_size"], int(seq)).tolist()
        for _ in range(4 * int(batch))
    ]
    args = dict(CONFIG_DEFAULTS)
    with tempfile.TemporaryDirectory() as out:
        args.update(
            model=model_dir,
            train=True,
            adapter_path=out,
            iters=int(iters),
            batch_size=int(batch),
            num_layers=int(layers),
            steps_per_report=int(every),
            steps_per_eval=10**9,
            save_every=10**9,
            max_seq_length=int(seq) + 1,
            grad_checkpoint=grad_checkpoint == "1",
            lora_parameters={"rank": int(rank), "dropout": 0.0, "scale": 20.0},
        )
        callback = Last()
        train_model(types.SimpleNamespace(**args), model, TokenRows(rows), TokenRows([]), callback)
    print(json.dumps(callback.reports[-1]))


if __name__ == "__main__":
    main()
