#!/usr/bin/env bash
# Ask the agent with curl: one plain request, then the same question streamed (server-sent events).
#
#   examples/clients/curl.sh "Which pods run in prod?"
#
# AGENT_SERVER_URL defaults to http://localhost:8000 (kagent-mlflow serve). Uses jq to build the JSON body safely.
set -euo pipefail

URL="${AGENT_SERVER_URL:-http://localhost:8000}"
QUESTION="${1:-What is OpenShift?}"
BODY="$(jq -n --arg q "$QUESTION" '{input: [{role: "user", content: $q}]}')"

echo "# POST $URL/invocations"
curl -sS --fail-with-body -X POST "$URL/invocations" -H 'Content-Type: application/json' -d "$BODY"
echo

echo "# POST $URL/invocations (stream)"
curl -sS -N --fail-with-body -X POST "$URL/invocations" -H 'Content-Type: application/json' \
    -d "$(jq -c '. + {stream: true}' <<<"$BODY")"
