#!/usr/bin/env bash
# Create (or reuse) a Python 3.11 virtualenv holding the real kagent agent runtime (PyPI kagent-adk) for the
# kagent integration lane.
#
#   scripts/setup-kagent-runtime.sh [VENV]        default VENV: <repo>/.venvs/kagent
#
# kagent-adk 0.10.4 imports a2a.server.apps, which a2a-sdk 1.x removed, so the runtime needs a2a-sdk<1 and lives in
# its own venv (our dev venv uses a2a-sdk 1.x). Every package is pinned by scripts/kagent-runtime-constraints.txt
# (a freeze of a working install) so CI resolves exactly the same set. Without it, the venv's default pip (23.2)
# gives up with ResolutionImpossible on opentelemetry-instrumentation-fastapi (a newer pip resolves it, in ~1 min);
# with it, both resolve. pip is upgraded first all the same.
# Idempotent: a venv where kagent-adk has the pinned version and imports is left as it is.
# Prints the venv path on the last line. Takes about 1-4 minutes on a 2-core machine.
set -euo pipefail

KAGENT_ADK_VERSION="${KAGENT_ADK_VERSION:-0.10.4}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venvs/kagent}"
CONSTRAINTS="$REPO/scripts/kagent-runtime-constraints.txt"

find_python311() {
    if [ -n "${PYTHON311:-}" ] && [ -x "$PYTHON311" ]; then echo "$PYTHON311"; return 0; fi
    if command -v python3.11 >/dev/null 2>&1; then command -v python3.11; return 0; fi
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)"/versions/3.11*/bin/python; do
            if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
        done
    fi
    return 1
}

# Prints the installed kagent-adk version when the runtime imports cleanly (both kagent.adk and the a2a-sdk 0.3
# server module it needs), nothing otherwise.
runtime_version() {
    [ -x "$VENV/bin/kagent-adk" ] || return 0
    "$VENV/bin/python" - <<'EOF' 2>/dev/null || true
import importlib.metadata as m
import a2a.server.apps  # noqa: F401  (gone in a2a-sdk 1.x)
import kagent.adk  # noqa: F401
print(m.version("kagent-adk"))
EOF
}

# pip quietly, minus this machine's warnings about absent local index folders (noise, not errors).
pip_quiet() {
    "$VENV/bin/python" -m pip "$@" --quiet --disable-pip-version-check 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'
}

if [ "$(runtime_version | tail -n 1)" = "$KAGENT_ADK_VERSION" ]; then
    echo "kagent-adk $KAGENT_ADK_VERSION already installed and importable in $VENV"
    echo "$VENV"
    exit 0
fi

if ! PY="$(find_python311)"; then
    echo "error: no Python 3.11 found (set PYTHON311=/path/to/python3.11, or install one with pyenv)" >&2
    exit 1
fi
echo "==> using $PY ($("$PY" --version 2>&1))"

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating venv $VENV"
    "$PY" -m venv "$VENV"
fi
echo "==> upgrading pip in $VENV"
pip_quiet install --upgrade pip
echo "==> installing kagent-adk==$KAGENT_ADK_VERSION 'a2a-sdk<1' (constraints: ${CONSTRAINTS#"$REPO"/})"
pip_quiet install -c "$CONSTRAINTS" "kagent-adk==$KAGENT_ADK_VERSION" 'a2a-sdk<1'

installed="$(runtime_version | tail -n 1)"
if [ "$installed" != "$KAGENT_ADK_VERSION" ]; then
    echo "error: kagent-adk did not install or import cleanly in $VENV (got '${installed}')" >&2
    exit 1
fi
echo "kagent-adk $installed installed (a2a-sdk $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("a2a-sdk"))'))"
echo "$VENV"
