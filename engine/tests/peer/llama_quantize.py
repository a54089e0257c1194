"""llama.cpp's own quantizer (llama_model_quantize in the libllama that
node-llama-cpp ships with its prebuilt llama.cpp: what the llama-quantize
tool runs), without an importance matrix.

usage: llama_quantize.py BINS_DIR IN.gguf OUT.gguf FTYPE
BINS_DIR: the folder holding libllama / libggml*; FTYPE: a llama_ftype
number (15 = Q4_K_M, 17 = Q5_K_M, 18 = Q6_K).
"""

import ctypes
import sys
from pathlib import Path


class Params(ctypes.Structure):
    # llama_model_quantize_params starts with nthread and ftype; the rest
    # (whose layout changes between releases) is kept as the library's
    # defaults fill it, in room to spare.
    _fields_ = [
        ("nthread", ctypes.c_int32),
        ("ftype", ctypes.c_int32),
        ("rest", ctypes.c_uint8 * 1024),
    ]


def main():
    bins, source, target, ftype = sys.argv[1:5]
    bins = Path(bins)
    ctypes.CDLL(str(bins / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    ctypes.CDLL(str(next(bins.glob("libggml.v*.so"))), mode=ctypes.RTLD_GLOBAL)
    llama = ctypes.CDLL(str(next(bins.glob("libllama.v*.so"))), mode=ctypes.RTLD_GLOBAL)
    llama.llama_model_quantize_default_params.restype = Params
    llama.llama_model_quantize.restype = ctypes.c_uint32
    llama.llama_model_quantize.argtypes = [
        ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(Params),
    ]
    params = llama.llama_model_quantize_default_params()
    params.nthread = 2
    params.ftype = int(ftype)
    rc = llama.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed ({rc})")


if __name__ == "__main__":
    main()
