"""gguf-py's quantizers (gguf.quants.quantize, ports of ggml's reference
ones) on given floats, to compare with ours byte for byte.

usage: gguf_quantize.py IN.f32 TYPE OUT.bin
IN.f32: little-endian f32 values (rows of 256); TYPE: a GGMLQuantizationType
name (F16, BF16, Q8_0, Q4_0, Q4_1, ...).
"""

import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import quantize


def main():
    source, qtype, target = sys.argv[1:4]
    values = np.frombuffer(Path(source).read_bytes(), dtype="<f4").reshape(-1, 256)
    data = quantize(values, GGMLQuantizationType[qtype])
    Path(target).write_bytes(np.ascontiguousarray(data).tobytes())


if __name__ == "__main__":
    main()
