"""mlx-lm's view of a model: logits and default_loss for given token rows.

usage: peer_logits.py MODEL_DIR BATCH_JSON OUT_SAFETENSORS [ADAPTER_DIR]
Writes `logits` (for the batch's tokens[:, :-1]) and prints
{"loss": ..., "ntoks": ...} from mlx_lm.tuner.trainer.default_loss.
"""

import json
import sys
from pathlib import Path

import mlx.core as mx
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.tuner.utils import load_adapters
from mlx_lm.utils import load_model


def main():
    model_dir, batch_json, out = sys.argv[1:4]
    adapter_dir = sys.argv[4] if len(sys.argv) > 4 else None
    model, _ = load_model(Path(model_dir))
    if adapter_dir:
        load_adapters(model, adapter_dir)
    model.eval()
    batch = json.loads(Path(batch_json).read_text())
    tokens = mx.array(batch["tokens"], dtype=mx.int32)
    lengths = mx.array(list(zip(batch["offsets"], batch["lengths"])))
    logits = model(tokens[:, :-1]).astype(mx.float32)
    loss, ntoks = default_loss(model, tokens, lengths)
    mx.save_safetensors(out, {"logits": logits})
    print(json.dumps({"loss": loss.item(), "ntoks": ntoks.item()}))


if __name__ == "__main__":
    main()
