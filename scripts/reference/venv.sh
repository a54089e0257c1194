#!/usr/bin/env bash
# Creates (once) the throwaway Python environment the reference scripts in
# this folder use, with the versions their expected values came from.
# Nothing in the build or the tests needs it.
set -euo pipefail
venv=${GGUF_REFERENCE_VENV:-/tmp/gguf-venv}
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet gguf==0.19.0 tokenizers==0.23.3 transformers==5.24.0 numpy==2.4.6
echo "$venv/bin/python"
