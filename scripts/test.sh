#!/usr/bin/env bash
# The project's test command: install what is needed, then run the whole suite against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
