"""mlx-lm's greedy generation from given prompt tokens, for parity and speed.

usage: generate_greedy.py MODEL_DIR REQUEST_JSON [ADAPTER_DIR]
REQUEST_JSON: {"prompt": [ids], "max_tokens": n, "stop": [ids]}
Prints {"tokens": [...], "prompt_tps": ..., "generation_tps": ...}: the
tokens mlx_lm.generate.generate_step yields (sampler None = argmax) up to a
stop token (not included) or max_tokens, and the speeds counted as
mlx-lm's stream_generate counts them.
"""

import json
import sys
import time
from pathlib import Path

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.tuner.utils import load_adapters
from mlx_lm.utils import load_model


def main():
    model_dir, request_path = sys.argv[1:3]
    adapter_dir = sys.argv[3] if len(sys.argv) > 3 else None
    model, _ = load_model(Path(model_dir))
    if adapter_dir:
        load_adapters(model, adapter_dir)
    model.eval()
    request = json.loads(Path(request_path).read_text())
    prompt = mx.array(request["prompt"], dtype=mx.uint32)
    stop = set(request.get("stop", []))

    tokens = []
    tic = time.perf_counter()
    prompt_time = None
    for n, (token, _) in enumerate(
        generate_step(prompt, model, max_tokens=request["max_tokens"])
    ):
        if n == 0:
            prompt_time = time.perf_counter() - tic
            tic = time.perf_counter()
        token = int(token)
        if token in stop:
            break
        tokens.append(token)
    generation_time = time.perf_counter() - tic
    print(
        json.dumps(
            {
                "tokens": tokens,
                "prompt_tps": len(request["prompt"]) / prompt_time,
                "generation_tps": (len(tokens) - 1) / generation_time
                if len(tokens) > 1
                else 0.0,
            }
        )
    )


if __name__ == "__main__":
    main()
