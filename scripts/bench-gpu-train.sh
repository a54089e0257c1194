#!/usr/bin/env bash
# LoRA/QLoRA training throughput at the sizes people use, on an NVIDIA GPU:
# `loralab train` against `mlx_lm lora` on the same YAML, the same data and
# the same random Llama-shaped models made on the device
# (scripts/bench/gpu_model.py): ~1B in bf16 with LoRA rank 8 on all layers,
# and ~8B quantized to 4 bits (group 64, QLoRA), both at batch 4 x 512.
# Each side runs once to warm up (MLX compiles its CUDA kernels on first
# use), then the sides alternate and the medians of the last report window
# are compared.
#
# usage: scripts/bench-gpu-train.sh LORALAB TOKENIZER_DIR [SIZES] [ROUNDS]
#   LORALAB        the loralab binary (built with the CUDA libmlx on its path)
#   TOKENIZER_DIR  tokenizer.json, tokenizer_config.json and
#                  special_tokens_map.json (e.g. from `loralab export --format hf`
#                  of the shipped SmolLM2)
#   SIZES          default "1b 8b" ("tiny" checks the script anywhere); ROUNDS default 2
# needs python3 with mlx (CUDA) and mlx-lm 0.32.2 importable.
set -euo pipefail

loralab=$1
tokenizer=$2
sizes=${3:-1b 8b}
rounds=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
work=${LORALAB_BENCH_WORK:-$(mktemp -d)}
iters=${LORALAB_BENCH_ITERS:-30}
mkdir -p "$work"

python3 "$here/bench/gpu_model.py" data "$work/data"

config() { # size side
  local model=$work/model-$1
  cat <<YAML
model: $model
train: true
data: $work/data
fine_tune_type: lora
num_layers: -1
batch_size: 4
iters: $iters
val_batches: 1
steps_per_report: 10
steps_per_eval: 100000
save_every: 100000
max_seq_length: 512
learning_rate: 1.0e-5
seed: 0
adapter_path: $work/adapters-$1-$2
lora_parameters:
  rank: 8
  scale: 20.0
  dropout: 0.0
YAML
}

# The last report line's tokens/s and peak memory.
last_report() {
  grep -E '^Iter [0-9]+: Train loss' "$1" | tail -1 |
    sed -E 's/.*Tokens\/sec ([0-9.]+).*Peak mem ([0-9.]+) GB.*/\1 \2/'
}

run_side() { # size side label
  local cfg=$work/$1-$2.yaml log=$work/$1-$2-$3.log started
  config "$1" "$2" >"$cfg"
  rm -rf "$work/adapters-$1-$2"
  started=$(date +%s%N)
  if [[ $2 == ours ]]; then
    "$loralab" train --config "$cfg" >"$log" 2>&1 || { tail -20 "$log"; return 1; }
  else
    python3 "$here/bench/mlx_lm_lora.py" --config "$cfg" >"$log" 2>&1 || { tail -20 "$log"; return 1; }
  fi
  local figures
  figures=$(last_report "$log")
  printf '%-4s %-4s %-7s tokens/s %s  peak GB %s  wall %s ms\n' "$1" "$2" "$3" \
    ${figures} $((($(date +%s%N) - started) / 1000000))
  [[ $3 == warm-up ]] || echo "$1 $2 $figures" >>"$work/results"
}

for size in $sizes; do
  case $size in
    1b) python3 "$here/bench/gpu_model.py" model 1b "$work/model-1b" "$tokenizer" ;;
    8b) python3 "$here/bench/gpu_model.py" model 8b "$work/model-8b" "$tokenizer" --bits 4 ;;
    # A check of this script on any machine (the CPU too).
    tiny) python3 "$here/bench/gpu_model.py" model tiny "$work/model-tiny" "$tokenizer" ;;
  esac
  run_side "$size" ours warm-up
  run_side "$size" peer warm-up
  for round in $(seq 1 "$rounds"); do
    run_side "$size" ours "round$round"
    run_side "$size" peer "round$round"
  done
  rm -rf "$work/model-$size"
done

python3 - "$work/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    size, side, tps, peak = line.split()
    runs.setdefault(size, {}).setdefault(side, []).append((float(tps), float(peak)))
for size, sides in runs.items():
    med = {s: (statistics.median(t for t, _ in r), statistics.median(m for _, m in r))
           for s, r in sides.items()}
    for side, name in (("ours", "loralab"), ("peer", "mlx-lm")):
        print(f"{size} {name:8s} median {med[side][0]:9.1f} tokens/s  peak {med[side][1]:.2f} GB")
    print(f"{size} ratio loralab / mlx-lm: {med['ours'][0] / med['peer'][0]:.2f}x tokens/s, "
          f"{med['ours'][1] / med['peer'][1]:.2f}x peak memory")
PY
