"""A random Llama-shaped model folder and a token-dense text dataset for the
GPU training bench (scripts/bench-gpu-train.sh). Throughput does not depend
on the weights' values, so they are drawn on the device instead of carried.

usage: gpu_model.py model SIZE OUT TOKENIZER_DIR [--bits 4]
       gpu_model.py data OUT
"""

import json
import random
import shutil
import sys
from pathlib import Path

# Llama 3.2 1B's and Llama 3 8B's block shapes, with SmolLM2's 49,152-token
# vocabulary (its tokenizer is the one carried): ~1.1B and ~7.2B parameters.
SIZES = {
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True),
    "tiny": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False),
}
VOCAB = 49152


def make_model(size, out, tokenizer_dir, bits=None):
    import mlx.core as mx

    shape = SIZES[size]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=VOCAB,
        rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=8192,
        hidden_act="silu", torch_dtype="bfloat16", bos_token_id=1, eos_token_id=2, **shape,
    )
    h, inter, kv = shape["hidden_size"], shape["intermediate_size"], shape["num_key_value_heads"]
    head_dim = h // shape["num_attention_heads"]
    linears = {
        "self_attn.q_proj": (h, h), "self_attn.k_proj": (kv * head_dim, h),
        "self_attn.v_proj": (kv * head_dim, h), "self_attn.o_proj": (h, h),
        "mlp.gate_proj": (inter, h), "mlp.up_proj": (inter, h), "mlp.down_proj": (h, inter),
    }
    key = mx.random.key(0)

    def normal(rows, cols):
        nonlocal key
        key, sub = mx.random.split(key)
        return (mx.random.normal((rows, cols), key=sub) * 0.02).astype(mx.bfloat16)

    def put(weights, name, rows, cols):
        w = normal(rows, cols)
        if bits:
            q, scales, biases = mx.quantize(w, group_size=64, bits=bits)
            weights[f"{name}.weight"] = q
            weights[f"{name}.scales"] = scales
            weights[f"{name}.biases"] = biases
        else:
            weights[f"{name}.weight"] = w

    # One shard per block keeps the peak host memory of writing low.
    index = {}
    for layer in range(shape["num_hidden_layers"]):
        weights = {}
        for name, (rows, cols) in linears.items():
            put(weights, f"model.layers.{layer}.{name}", rows, cols)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            weights[f"model.layers.{layer}.{norm}.weight"] = mx.ones((h,), dtype=mx.bfloat16)
        mx.eval(weights)
        file = f"model-{layer:05d}.safetensors"
        mx.save_safetensors(str(out / file), weights, metadata={"format": "mlx"})
        index.update({name: file for name in weights})
    weights = {"model.norm.weight": mx.ones((h,), dtype=mx.bfloat16)}
    put(weights, "model.embed_tokens", VOCAB, h)
    if not shape["tie_word_embeddings"]:
        put(weights, "lm_head", VOCAB, h)
    mx.eval(weights)
    mx.save_safetensors(str(out / "model-head.safetensors"), weights, metadata={"format": "mlx"})
    index.update({name: "model-head.safetensors" for name in weights})
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": index}, indent=1))
    if bits:
        config["quantization"] = {"group_size": 64, "bits": bits}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(tokenizer_dir) / name, out / name)


def make_data(out):
    """Texts of ~700 tokens, so every row of a 512-token batch is full."""
    rng = random.Random(0)
    words = ("the ship sails north over grey water while the crew sings of home and "
             "gold and wind and the long night under stars").split()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 256), ("valid", 16)):
        with open(out / f"{split}.jsonl", "w") as f:
            for _ in range(count):
                text = " ".join(rng.choice(words) for _ in range(700))
                f.write(json.dumps({"text": text}) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "model":
        bits = int(sys.argv[sys.argv.index("--bits") + 1]) if "--bits" in sys.argv else None
        make_model(sys.argv[2], sys.argv[3], sys.argv[4], bits)
    else:
        make_data(sys.argv[2])
