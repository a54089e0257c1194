"""Makes bench-export.sh's inputs in OUT: a ~0.5B model of Qwen2.5-0.5B's
shape (random bf16 weights, a byte-level tokenizer.json) and rank-8 adapters
on every layer of it and of the SmolLM2 GGUF, in mlx-lm's adapter layout.

usage: export_models.py OUT SMOLLM2_GGUF
"""
import json
import sys
from pathlib import Path

import mlx.core as mx

out, gguf = Path(sys.argv[1]), sys.argv[2]
QWEN = dict(hidden=896, layers=24, inter=4864, heads=14, kv_heads=2, vocab=151936)
PROJECTIONS = {
    "self_attn.q_proj": lambda d: (d["hidden"], d["hidden"]),
    "self_attn.k_proj": lambda d: (d["hidden"], d["kv"]),
    "self_attn.v_proj": lambda d: (d["hidden"], d["kv"]),
    "self_attn.o_proj": lambda d: (d["hidden"], d["hidden"]),
    "mlp.gate_proj": lambda d: (d["hidden"], d["inter"]),
    "mlp.up_proj": lambda d: (d["hidden"], d["inter"]),
    "mlp.down_proj": lambda d: (d["inter"], d["hidden"]),
}


def qwen():
    d = QWEN
    folder = out / "qwen-0.5b"
    folder.mkdir(parents=True)
    head_dim = d["hidden"] // d["heads"]
    kv = d["kv_heads"] * head_dim
    weights = {"model.embed_tokens.weight": (d["vocab"], d["hidden"]), "model.norm.weight": (d["hidden"],)}
    for i in range(d["layers"]):
        p = f"model.layers.{i}"
        for name, shape in {
            "self_attn.q_proj.weight": (d["hidden"], d["hidden"]), "self_attn.q_proj.bias": (d["hidden"],),
            "self_attn.k_proj.weight": (kv, d["hidden"]), "self_attn.k_proj.bias": (kv,),
            "self_attn.v_proj.weight": (kv, d["hidden"]), "self_attn.v_proj.bias": (kv,),
            "self_attn.o_proj.weight": (d["hidden"], d["hidden"]),
            "mlp.gate_proj.weight": (d["inter"], d["hidden"]), "mlp.up_proj.weight": (d["inter"], d["hidden"]),
            "mlp.down_proj.weight": (d["hidden"], d["inter"]),
            "input_layernorm.weight": (d["hidden"],), "post_attention_layernorm.weight": (d["hidden"],),
        }.items():
            weights[f"{p}.{name}"] = shape
    arrays = {k: (mx.random.normal(s) * 0.02).astype(mx.bfloat16) for k, s in weights.items()}
    total = sum(a.size for a in arrays.values())
    mx.save_safetensors(str(folder / "model.safetensors"), arrays)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": d["hidden"],
        "num_hidden_layers": d["layers"], "intermediate_size": d["inter"], "num_attention_heads": d["heads"],
        "num_key_value_heads": d["kv_heads"], "vocab_size": d["vocab"], "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": True,
    }))
    # A GGUF export carries the tokenizer: a byte-level BPE without merges
    # (GPT-2's byte alphabet), padded to the vocabulary by the export.
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    (folder / "tokenizer.json").write_text(json.dumps({
        "version": "1.0", "added_tokens": [], "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "vocab": {c: b for b, c in chars.items()}, "merges": []},
    }))
    print(f"qwen-0.5b: {total / 1e6:.0f}M parameters", file=sys.stderr)
    return dict(hidden=d["hidden"], kv=kv, inter=d["inter"], layers=d["layers"])


def adapter(name, dims, rank=8):
    folder = out / f"adapter-{name}"
    folder.mkdir(parents=True)
    arrays = {}
    for i in range(dims["layers"]):
        for proj, shape in PROJECTIONS.items():
            fan_in, fan_out = shape(dims)
            arrays[f"model.layers.{i}.{proj}.lora_a"] = mx.random.uniform(-0.05, 0.05, (fan_in, rank))
            arrays[f"model.layers.{i}.{proj}.lora_b"] = mx.random.normal((rank, fan_out)) * 0.01
    mx.save_safetensors(str(folder / "adapters.safetensors"), arrays)
    (folder / "adapter_config.json").write_text(json.dumps({
        "fine_tune_type": "lora", "num_layers": dims["layers"],
        "lora_parameters": {"rank": rank, "scale": 20.0, "dropout": 0.0},
    }))


adapter("qwen-0.5b", qwen())
adapter("smollm2", dict(hidden=576, kv=192, inter=1536, layers=30))
