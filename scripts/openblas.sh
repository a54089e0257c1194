# Sourced by scripts/setup.sh and scripts/setup-peer.sh (which define `log`).
#
# The MLX wheels bundle a reference BLAS/LAPACK next to libmlx.so, found
# through its RPATH; it is ten times slower than OpenBLAS. use_openblas
# points those names at Debian's OpenBLAS, so our build and the Python peer
# use the same BLAS; the wheels' own files stay as published.
use_openblas() { # folder of a wheel's bundled libraries
  local openblas=/usr/lib/x86_64-linux-gnu/openblas-pthread lib target
  for lib in "$1"/libblas-*.so.* "$1"/liblapack-*.so.*; do
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
}
