"""A full fine-tune with mlx-lm's own code path (mlx_lm.lora.train_model with
fine_tune_type full: the top NUM_LAYERS blocks unfrozen, Adam) on given token
rows taken as one batch, writing adapters.safetensors + adapter_config.json.

usage: peer_full_train.py MODEL_DIR ROWS_JSON ADAPTER_DIR NUM_LAYERS ITERS LEARNING_RATE
ROWS_JSON: {"rows": [[token ids], ...]}
Prints the train loss of every step as JSON.
"""

import json
import sys
import types
from pathlib import Path

from mlx_lm.lora import CONFIG_DEFAULTS, train_model
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm.utils import load_model

from peer_train import TokenRows


class Losses(TrainingCallback):
    def __init__(self):
        self.losses = []

    def on_train_loss_report(self, train_info):
        self.losses.append(train_info["train_loss"])


def main():
    model_dir, rows_json, adapter_dir, num_layers, iters, lr = sys.argv[1:7]
    rows = json.loads(Path(rows_json).read_text())["rows"]
    model, _ = load_model(Path(model_dir))
    args = dict(CONFIG_DEFAULTS)
    args.update(
        model=model_dir,
        train=True,
        adapter_path=adapter_dir,
        fine_tune_type="full",
        num_layers=int(num_layers),
        iters=int(iters),
        learning_rate=float(lr),
        batch_size=len(rows),
        steps_per_report=1,
        steps_per_eval=1000,
        save_every=1000,
    )
    losses = Losses()
    train_model(
        types.SimpleNamespace(**args), model, TokenRows(rows), TokenRows([]), losses
    )
    print(json.dumps(losses.losses))


if __name__ == "__main__":
    main()
