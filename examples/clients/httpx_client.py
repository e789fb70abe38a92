"""Ask the agent over plain HTTP with httpx: POST /invocations, print the answer, tool calls and token usage.

    python examples/clients/httpx_client.py "Which pods run in prod?" [--url http://localhost:8000]

The URL defaults to $AGENT_SERVER_URL, else http://localhost:8000 (``kagent-mlflow serve``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import httpx


def ask(url: str, question: str) -> dict:
    """One question, one Responses-format answer (raises for HTTP errors, with the server's message)."""
    payload = {"input": [{"role": "user", "content": question}]}
    response = httpx.post(f"{url.rstrip('/')}/invocations", json=payload, timeout=120)
    if response.status_code != 200:
        message = response.json().get("error", {}).get("message", response.text)
        raise SystemExit(f"error: HTTP {response.status_code}: {message}")
    return response.json()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--url", default=os.environ.get("AGENT_SERVER_URL", "http://localhost:8000"))
    args = parser.parse_args()
    try:
        body = ask(args.url, args.question)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the agent server at {args.url}: {exc}", file=sys.stderr)
        return 1
    for item in body["output"]:
        if item["type"] == "function_call":
            print(f"tool call: {item['name']}({item['arguments']})")
        elif item["type"] == "function_call_output":
            print(f"tool result: {item['output']}")
        elif item["type"] == "message":
            print("answer:", "".join(part.get("text", "") for part in item["content"]))
    print("usage:", json.dumps({k: body["usage"][k] for k in ("input_tokens", "output_tokens", "total_tokens")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
