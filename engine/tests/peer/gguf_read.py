"""gguf-py (llama.cpp's own GGUF package) reading a file, for the writer tests.

usage: gguf_read.py FILE OUT_DIR [TENSOR ...]
Writes OUT_DIR/read.json:
  {"version", "alignment", "data_offset",
   "metadata": {key: {"type": T, "item_type": T or null, "value": ...}},
   "tensors": [{"name", "type", "dims", "offset", "n_bytes"}]}
(T a GGUFValueType name, dims in ggml order, offset from the data section)
and, for each TENSOR named (every tensor when none is), OUT_DIR/<name>.f32:
gguf.quants.dequantize of its bytes as little-endian f32.
"""

import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize


def main():
    path, out_dir = sys.argv[1:3]
    wanted = set(sys.argv[3:])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reader = GGUFReader(path)
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        kind = field.types[0]
        item = None
        if kind == GGUFValueType.ARRAY:
            # An empty array lists no item type; its raw code is the part
            # after the key and the value type.
            item = GGUFValueType(int(field.parts[3][0]))
        value = field.contents()
        if kind == GGUFValueType.ARRAY and item == GGUFValueType.STRING:
            value = list(value)
        metadata[key] = {
            "type": kind.name,
            "item_type": item.name if item is not None else None,
            "value": value,
        }
    tensors = []
    for t in reader.tensors:
        tensors.append(
            {
                "name": t.name,
                "type": t.tensor_type.name,
                "dims": [int(d) for d in t.shape],
                "offset": int(t.data_offset - reader.data_offset),
                "n_bytes": int(t.n_bytes),
            }
        )
        if not wanted or t.name in wanted:
            values = dequantize(t.data, t.tensor_type).astype("<f4")
            (out / f"{t.name}.f32").write_bytes(np.ascontiguousarray(values).tobytes())
    alignment = reader.alignment
    (out / "read.json").write_text(
        json.dumps(
            {
                "version": int(reader.fields["GGUF.version"].contents()),
                "alignment": int(alignment),
                "data_offset": int(reader.data_offset),
                "metadata": metadata,
                "tensors": tensors,
            }
        )
    )


if __name__ == "__main__":
    main()
