#!/usr/bin/env bash
# Installs the Python peer used by the parity tests and benchmarks: mlx-lm on
# the same MLX build (0.32.2, CPU) that Loralab links, in .deps/peer-venv,
# gguf-py (llama.cpp's own GGUF package), which reads back our GGUF exports,
# and TensorBoard, whose reader reads back our event files.
# Like scripts/setup.sh, it points the wheel's bundled reference BLAS/LAPACK at
# Debian's OpenBLAS, so both sides of a comparison use the same BLAS.
# Idempotent: a second run prints nothing and downloads nothing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
venv="$deps/peer-venv"

MLX_SPEC="mlx[cpu]==0.32.2"
MLX_LM_SPEC="mlx-lm==0.32.2"
GGUF_SPEC="gguf==0.19.0"
TENSORBOARD_SPEC="tensorboard==2.21.0"
wanted="$MLX_SPEC $MLX_LM_SPEC $GGUF_SPEC $TENSORBOARD_SPEC"

log() { printf '[setup-peer] %s\n' "$*" >&2; }

stamp="$venv/.loralab-peer"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
  if [[ ! -x "$venv/bin/python" ]]; then
    log "creating $venv"
    python3 -m venv "$venv"
  fi
  log "installing $wanted"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$MLX_SPEC" "$MLX_LM_SPEC" "$GGUF_SPEC" "$TENSORBOARD_SPEC" >&2
  printf '%s\n' "$wanted" > "$stamp"
fi

# Same BLAS as our build (see scripts/openblas.sh).
# shellcheck source=scripts/openblas.sh
source "$root/scripts/openblas.sh"
use_openblas "$("$venv/bin/python" - <<'PY'
import pathlib, sysconfig
print(pathlib.Path(sysconfig.get_paths()["purelib"]) / "mlx_cpu.libs")
PY
)"
