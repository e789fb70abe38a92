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
echo "==> installing kagent-mlflow[dev] into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"

for setup in scripts/setup-kagent-runtime.sh scripts/setup-llama-stack.sh; do
  if [ -f "$setup" ]; then
    echo "==> $setup"
    bash "$setup"
  fi
done
