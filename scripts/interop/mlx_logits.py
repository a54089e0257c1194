"""mlx-lm's logits for the interop prompt: MODEL_DIR with ADAPTER_DIR, saved as .npy."""
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx_lm.tuner.utils import load_adapters
from mlx_lm.utils import load_model

sys.path.insert(0, str(Path(__file__).parent))
from prompt import PROMPT  # noqa: E402

model_dir, adapter_dir, out = sys.argv[1:4]
model, _ = load_model(Path(model_dir))
load_adapters(model, adapter_dir)
model.eval()
logits = model(mx.array([PROMPT], dtype=mx.uint32)).astype(mx.float32)
np.save(out, np.array(logits))
