#!/usr/bin/env bash
# Data-parallel training throughput: the same run on 1 rank and on N ranks
# (`loralab train --ranks N`: ring over 127.0.0.1 on the CPU, NCCL with one
# GPU per rank on a CUDA machine), same global batch, same seed. Prints each
# side's global tokens/s (median of the reports after the first two, which
# include MLX's kernel compilation), the per-rank rate, the scaling
# efficiency (tokens/s at N over N x tokens/s at 1) and the loss of every
# step of both, which must agree.
#
# On the CPU the ranks share the cores: each rank's OpenBLAS gets
# cores / N threads, so the comparison is of one process using all cores
# against N using a share each (what one machine can gain is the
# communication-free overlap; the gain comes from more machines).
#
# The sides alternate (1 rank, N ranks, 1 rank, ...) for ROUNDS rounds and
# the medians over all rounds are compared; the load average is printed with
# every run, so a figure taken on a shared machine can be judged.
#
# usage: scripts/bench-dist.sh [RANKS] [ITERS]   (defaults 2 and 12)
# env:   LORALAB_BIN=path   the binary (default: build the release one)
#        BENCH_MODEL=path   a GGUF or HF folder (default: the shipped SmolLM2-135M)
#        BENCH_BATCH=8      global batch (default 4 x RANKS; must divide by RANKS)
#        BENCH_SEQ=256      tokens per row
#        ROUNDS=1           alternations of the two sides
# On a GPU machine with N GPUs (issue 18's run):
#        BENCH_BATCH=$((8 * N)) BENCH_SEQ=512 scripts/bench-dist.sh N 30
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
ranks=${1:-2}
iters=${2:-12}
batch=${BENCH_BATCH:-$((4 * ranks))}
seq=${BENCH_SEQ:-256}
rounds=${ROUNDS:-1}
model=${BENCH_MODEL:-$(sed -n 's/^LORALAB_DEFAULT_MODEL = "\(.*\)"/\1/p' "$root/.cargo/config.toml")}
if [[ -z "${LORALAB_BIN:-}" ]]; then
  (cd "$root" && cargo build --quiet --release -p server)
  loralab="$root/target/release/loralab"
else
  loralab=$LORALAB_BIN
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data"
# Plain text rows long enough to fill `seq` tokens, so every batch is full.
python3 - "$work/data" "$seq" "$batch" "$iters" <<'PY'
import json, random, sys
out, seq, batch, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(0)
words = "the a river stone light quiet north garden window morning paper song".split()
def row():
    return {"text": " ".join(rng.choice(words) for _ in range(seq))}
for name, count in (("train", batch * iters), ("valid", batch), ("test", batch)):
    with open(f"{out}/{name}.jsonl", "w") as f:
        for _ in range(count):
            f.write(json.dumps(row()) + "\n")
PY

cores=$(nproc)
load() { cut -d' ' -f1-3 /proc/loadavg; }
run_side() {
  local n=$1 round=$2 extra=() before
  [[ $n -gt 1 ]] && extra=(--ranks "$n")
  cat >"$work/ranks-$n.yaml" <<YAML
model: $model
data: $work/data
seed: 0
num_layers: -1
batch_size: $batch
iters: $iters
max_seq_length: $seq
learning_rate: 1.0e-4
steps_per_report: 1
steps_per_eval: 100000
val_batches: 1
save_every: 100000
adapter_path: $work/adapters-$n
lora_parameters:
  rank: 8
  scale: 20.0
  dropout: 0.0
YAML
  before=$(load)
  rm -rf "$work/adapters-$n"
  # On the CPU, each rank gets its share of the cores.
  OPENBLAS_NUM_THREADS=$(( cores / n > 0 ? cores / n : 1 )) \
    "$loralab" train --config "$work/ranks-$n.yaml" --events "$work/events-$n-$round.jsonl" "${extra[@]}" \
    >"$work/out-$n" 2>"$work/err-$n" || {
    cat "$work/out-$n" "$work/err-$n" >&2
    exit 1
  }
  printf 'round %s: %s rank(s) done (load %s -> %s on %s cores)\n' "$round" "$n" "$before" "$(load)" "$cores"
}

for round in $(seq 1 "$rounds"); do
  run_side 1 "$round"
  run_side "$ranks" "$round"
done

python3 - "$work" "$ranks" "$rounds" <<'PY'
import json, statistics, sys
work, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def read(ranks, round):
    reports = [json.loads(l) for l in open(f"{work}/events-{ranks}-{round}.jsonl")]
    return [r for r in reports if r["event"] == "report"]
def rates(reports):
    # The first two steps include MLX's kernel compilation.
    return [r["tokens_per_sec"] for r in reports[2:]] or [r["tokens_per_sec"] for r in reports]
ones = [read(1, r) for r in range(1, rounds + 1)]
manys = [read(n, r) for r in range(1, rounds + 1)]
one, many = ones[0], manys[0]
def rate(runs):
    return statistics.median(t for run in runs for t in rates(run))
def peak(runs):
    return max(r["peak_memory_gb"] for run in runs for r in run)
r1, rn = rate(ones), rate(manys)
print(f"1 rank : {r1:9.1f} tokens/s  peak {peak(ones):.2f} GB")
print(f"{n} ranks: {rn:9.1f} tokens/s global, {rn / n:.1f} per rank, rank 0 peak {peak(manys):.2f} GB")
print(f"scaling efficiency: {rn / (n * r1):.1%} (speed-up {rn / r1:.2f}x)")
worst = max(abs(a["train_loss"] - b["train_loss"]) / abs(a["train_loss"]) for a, b in zip(one, many))
print("losses (step: 1 rank / N ranks):")
for a, b in zip(one, many):
    print(f"  {a['step']:3d}: {a['train_loss']:.6f} / {b['train_loss']:.6f}")
print(f"largest relative loss difference: {worst:.2e}")
PY
