"""A few Adam steps of mlx-lm's LoRA training from a given adapter, on one
batch, the way mlx_lm's trainer steps (nn.value_and_grad of default_loss,
optimizer.update).

usage: peer_steps.py MODEL_DIR ADAPTER_DIR BATCH_JSON STEPS LEARNING_RATE OUT_SAFETENSORS
Prints the per-step losses as JSON; writes the trained adapter weights.
"""

import json
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.tuner.utils import load_adapters
from mlx_lm.utils import load_model


def main():
    model_dir, adapter_dir, batch_json, steps, lr, out = sys.argv[1:7]
    model, _ = load_model(Path(model_dir))
    model.freeze()
    load_adapters(model, adapter_dir)
    model.train()
    batch = json.loads(Path(batch_json).read_text())
    tokens = mx.array(batch["tokens"], dtype=mx.int32)
    lengths = mx.array(list(zip(batch["offsets"], batch["lengths"])))
    opt = optim.Adam(learning_rate=float(lr))
    loss_value_and_grad = nn.value_and_grad(model, default_loss)
    losses = []
    for _ in range(int(steps)):
        (loss, _), grad = loss_value_and_grad(model, tokens, lengths)
        opt.update(model, grad)
        mx.eval(model.parameters(), opt.state, loss)
        losses.append(loss.item())
    mx.save_safetensors(out, dict(tree_flatten(model.trainable_parameters())))
    print(json.dumps(losses))


if __name__ == "__main__":
    main()
