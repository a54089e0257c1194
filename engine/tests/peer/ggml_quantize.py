"""ggml's own quantizer (ggml_quantize_chunk in the libggml-base.so that
node-llama-cpp ships with its prebuilt llama.cpp): what llama.cpp's
llama-quantize runs for a tensor when no importance matrix is given.

usage: ggml_quantize.py LIBGGML_BASE IN.f32 TYPE_CODE N_PER_ROW OUT.bin
IN.f32: little-endian f32 rows of N_PER_ROW; TYPE_CODE: the ggml type number.
"""

import ctypes
import sys
from pathlib import Path

import numpy as np


def main():
    lib_path, source, type_code, n_per_row, target = sys.argv[1:6]
    lib = ctypes.CDLL(lib_path)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
    ]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    n_per_row = int(n_per_row)
    values = np.ascontiguousarray(
        np.frombuffer(Path(source).read_bytes(), dtype="<f4").reshape(-1, n_per_row)
    )
    rows = values.shape[0]
    out = np.zeros(rows * lib.ggml_row_size(int(type_code), n_per_row), dtype=np.uint8)
    size = lib.ggml_quantize_chunk(
        int(type_code), values.ctypes.data, out.ctypes.data, 0, rows, n_per_row, None
    )
    Path(target).write_bytes(out[:size].tobytes())


if __name__ == "__main__":
    main()
