#!/usr/bin/env bash
# Packs the release binary with the shared libraries it needs into
# dist/loralab-<version>-linux-x86_64/ (and a .tar.gz of it), so that it runs
# on another Debian 12 x86_64 machine without Rust, the wheel or OpenBLAS
# installed. Run by `make dist` after a release build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
name="loralab-$version-linux-x86_64"
out="dist/$name"
rm -rf "$out" "dist/$name.tar.gz"
mkdir -p "$out/lib"

cp target/release/loralab "$out/loralab"
# libmlx.so plus what it loads: the BLAS/LAPACK names it was linked against
# (pointing at OpenBLAS here, copied as real files), OpenBLAS itself and its
# Fortran runtime.
cp .deps/mlx-cpu/mlx/lib/libmlx.so "$out/lib/"
for lib in .deps/mlx-cpu/mlx_cpu.libs/*; do
  cp -L "$lib" "$out/lib/"
done
for needed in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0; do
  path=$(ldconfig -p | awk -v lib="$needed" '$1 == lib { print $NF; exit }')
  [[ -n "$path" ]] && cp -L "$path" "$out/lib/"
done
# DT_RPATH (not RUNPATH) so that it also applies to libmlx.so's own needs.
patchelf --force-rpath --set-rpath '$ORIGIN/lib' "$out/loralab"
patchelf --force-rpath --set-rpath '$ORIGIN' "$out/lib/libmlx.so"

cp README.md LICENSE-MIT LICENSE-APACHE "$out/" 2>/dev/null || true
tar -C dist -czf "dist/$name.tar.gz" "$name"
echo "dist/$name.tar.gz"
