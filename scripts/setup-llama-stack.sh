#!/usr/bin/env bash
# Create (or reuse) a Python 3.12 virtualenv holding a real Llama Stack server for the Pattern 2 test lane.
#
#   scripts/setup-llama-stack.sh [VENV]        default VENV: <repo>/.venvs/llama
#
# llama-stack 0.7.x needs Python >= 3.12; our dev venv is 3.11, so it lives in its own venv.
# Idempotent: an existing venv with the pinned version is left as it is. Prints the venv path on the last line.
set -euo pipefail

LLAMA_STACK_VERSION="${LLAMA_STACK_VERSION:-0.7.3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venvs/llama}"

find_python312() {
    if [ -n "${PYTHON312:-}" ] && [ -x "$PYTHON312" ]; then echo "$PYTHON312"; return 0; fi
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)"/versions/3.12*/bin/python; do
            if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
        done
    fi
    for candidate in python3.12 python3.13 python3.14; do
        if command -v "$candidate" >/dev/null 2>&1; then command -v "$candidate"; return 0; fi
    done
    return 1
}

installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("llama-stack"))' 2>/dev/null || true
}

if [ -x "$VENV/bin/llama" ] && [ "$(installed_version)" = "$LLAMA_STACK_VERSION" ]; then
    echo "llama-stack $LLAMA_STACK_VERSION already installed"
    echo "$VENV"
    exit 0
fi

if ! PY="$(find_python312)"; then
    echo "error: no Python >= 3.12 found (set PYTHON312=/path/to/python3.12, or install one with pyenv)" >&2
    exit 1
fi
echo "using $PY ($("$PY" --version 2>&1))"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# mcp 2.x changed APIs llama-stack 0.7 imports; keep it below 2.
"$VENV/bin/python" -m pip install --quiet "llama-stack==$LLAMA_STACK_VERSION" 'mcp<2'
"$VENV/bin/llama" stack --help >/dev/null
echo "llama-stack $(installed_version) installed"
echo "$VENV"
