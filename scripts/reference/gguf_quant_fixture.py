"""Writes engine/tests/gguf_fixtures/quant_blocks.gguf: for every ggml type
the engine dequantizes, a tensor of random blocks (`<TYPE>`) and what
gguf-py's reference dequantizer makes of it (`<TYPE>.expected`, F32).

The file is written by gguf-py's GGUFWriter, so the engine's reader is also
checked against a file it did not write. Run once by hand; the tests only
read its output:

    python -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf numpy
    /tmp/gguf-venv/bin/python scripts/reference/gguf_quant_fixture.py
"""

import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

ROWS, COLS = 4, 256

# Byte offsets of each block's f16 scale fields: random bytes there could be
# NaN or infinity, so they get chosen values instead.
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}


def main(out: Path) -> None:
    rng = np.random.default_rng(20261126)
    writer = gguf.GGUFWriter(str(out), arch="fixture")
    writer.add_string("fixture.source", "scripts/reference/gguf_quant_fixture.py")
    for qtype in [*F16_FIELDS, T.Q8_K]:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n_blocks = ROWS * COLS // block_size
        blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
        for offset in F16_FIELDS.get(qtype, []):
            values = rng.uniform(-0.1, 0.1, size=n_blocks).astype(np.float16)
            blocks[:, offset : offset + 2] = values.view(np.uint8).reshape(n_blocks, 2)
        if qtype == T.Q8_K:
            d = rng.uniform(-0.01, 0.01, size=n_blocks).astype(np.float32)
            blocks[:, 0:4] = d.view(np.uint8).reshape(n_blocks, 4)
        raw = blocks.reshape(ROWS, -1)
        if qtype == T.Q8_K:
            # gguf-py has no Q8_K dequantizer; the format is f32 d times
            # 256 signed bytes (block sums unused), as in ggml-quants.c.
            qs = blocks[:, 4:260].view(np.int8).astype(np.float32)
            expected = (qs * d[:, None]).reshape(ROWS, COLS)
        else:
            expected = dequantize(raw, qtype).astype(np.float32)
        assert expected.shape == (ROWS, COLS), expected.shape
        writer.add_tensor(qtype.name, raw, raw_dtype=qtype)
        writer.add_tensor(f"{qtype.name}.expected", expected)
    plain = rng.standard_normal((3, 40)).astype(np.float32)
    writer.add_tensor("F32", plain)
    writer.add_tensor("F16", plain.astype(np.float16))
    bf16 = (plain.view(np.uint32) >> 16).astype(np.uint16)
    writer.add_tensor("BF16", bf16.view(np.uint8).reshape(3, 80), raw_dtype=T.BF16)
    writer.add_tensor("BF16.expected", (bf16.astype(np.uint32) << 16).view(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "engine/tests/gguf_fixtures/quant_blocks.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    main(out)
