#!/usr/bin/env bash
# Installs the Python peer used by the parity tests and benchmarks: mlx-lm on
# the same MLX build (0.32.2, CPU) that Loralab links, in .deps/peer-venv.
# Like scripts/setup.sh, it points the wheel's bundled reference BLAS/LAPACK at
# Debian's OpenBLAS, so both sides of a comparison use the same BLAS.
# Idempotent: a second run prints nothing and downloads nothing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
venv="$deps/peer-venv"

MLX_SPEC="mlx[cpu]==0.32.2"
MLX_LM_SPEC="mlx-lm==0.32.2"
wanted="$MLX_SPEC $MLX_LM_SPEC"

log() { printf '[setup-peer] %s\n' "$*" >&2; }

stamp="$venv/.loralab-peer"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
  if [[ ! -x "$venv/bin/python" ]]; then
    log "creating $venv"
    python3 -m venv "$venv"
  fi
  log "installing $wanted"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$MLX_SPEC" "$MLX_LM_SPEC" >&2
  printf '%s\n' "$wanted" > "$stamp"
fi

# Same BLAS as our build (see scripts/setup.sh): the wheel finds these names
# through its RPATH; the wheel's files themselves stay as published.
openblas=/usr/lib/x86_64-linux-gnu/openblas-pthread
libs_dir=$("$venv/bin/python" - <<'PY'
import pathlib, sysconfig
print(pathlib.Path(sysconfig.get_paths()["purelib"]) / "mlx_cpu.libs")
PY
)
for lib in "$libs_dir"/libblas-*.so.* "$libs_dir"/liblapack-*.so.*; do
  [[ -e "$lib" || -L "$lib" ]] || continue
  case "$lib" in
    */libblas-*) target="$openblas/libblas.so.3" ;;
    *) target="$openblas/liblapack.so.3" ;;
  esac
  if [[ "$(readlink "$lib" || true)" != "$target" ]]; then
    log "linking $(basename "$lib") to OpenBLAS"
    ln -sf "$target" "$lib"
  fi
done
