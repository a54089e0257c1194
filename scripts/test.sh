#!/usr/bin/env bash
# Every check Loralab has: formatting, lints, then all tests. Run by
# `make test` (after scripts/setup.sh) and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== end-to-end (chromium)"
cargo build -p server
cargo build -p server --example e2e_fixture
(cd end2end && npm test)
