#!/usr/bin/env bash
# LoRA training throughput, Loralab vs mlx-lm (mlx_lm.lora's trainer), on the
# same random SmolLM2-135M-shaped model (saved once as an HF folder), the same
# token rows and settings (batch 4 x 256, rank 8, top 16 layers, f32) and the
# same BLAS (OpenBLAS: scripts/setup-peer.sh relinks the wheel's).
#
# The machine is shared and noisy, so the sides alternate (ours, peer, ours,
# peer, ...) and the medians are compared; the load average is printed with
# every run so a figure can be judged.
#
# usage: scripts/bench-train.sh [ROUNDS] [ITERS]   (defaults 3 and 6)
# env:   LORALAB_BENCH_PROFILE=1 adds the step breakdown to ours' runs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
iters=${2:-6}
"$root/scripts/setup-peer.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/model"

cd "$root"
cargo bench -p engine --bench lora_throughput --no-run >"$work/build.log" 2>&1 || {
  cat "$work/build.log" >&2
  exit 1
}
# A copy of the built bench, so a rebuild during the runs changes nothing.
exe=$(sed -n 's/.*Executable .*(\(.*\)).*/\1/p' "$work/build.log" | tail -1)
cp "$exe" "$work/bench"

load() { cut -d' ' -f1-3 /proc/loadavg; }
cores=$(nproc)

run_side() {
  local side=$1 round=$2 before out
  before=$(load)
  # Each side compiles MLX's fused kernels into its own cache: ours are built
  # with patches/mlx-jit-preamble.h, mlx-lm's with its wheel's preamble.
  mkdir -p "$work/kernels-$side"
  out=$(TMPDIR="$work/kernels-$side" LORALAB_BENCH_MODEL="$work/model" LORALAB_BENCH_SIDE=$side \
    LORALAB_BENCH_ITERS=$iters "$work/bench" 2>"$work/stderr") || {
    cat "$work/stderr" >&2
    exit 1
  }
  printf '%s\n' "$out" | grep '^PROFILE' || true
  local line
  line=$(printf '%s\n' "$out" | grep "^RESULT side=$side")
  printf 'round %s %-4s %s  (load %s -> %s on %s cores)\n' \
    "$round" "$side" "${line#RESULT side=$side }" "$before" "$(load)" "$cores"
  printf '%s\n' "$line" >>"$work/results"
}

for round in $(seq 1 "$rounds"); do
  run_side ours "$round"
  run_side peer "$round"
done

python3 - "$work/results" <<'PY'
import statistics, sys
runs = {"ours": [], "peer": []}
for line in open(sys.argv[1]):
    fields = dict(f.split("=") for f in line.split()[1:])
    side = line.split()[1].split("=")[1]
    runs[side].append((float(fields["tokens_per_sec"]), float(fields["peak_gb"])))
med = {s: (statistics.median(t for t, _ in r), statistics.median(m for _, m in r))
       for s, r in runs.items()}
for side, name in (("ours", "loralab"), ("peer", "mlx-lm")):
    tps = ", ".join(f"{t:.1f}" for t, _ in runs[side])
    print(f"{name:8s} median {med[side][0]:6.1f} tokens/s  peak {med[side][1]:.2f} GB  (runs: {tps})")
print(f"ratio loralab / mlx-lm: {med['ours'][0] / med['peer'][0]:.2f}x tokens/s, "
      f"{med['ours'][1] / med['peer'][1]:.2f}x peak memory")
PY
