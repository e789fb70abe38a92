"""Stream an answer: POST /invocations with ``"stream": true`` and print text as it arrives.

    python examples/clients/stream.py "Which pods run in prod?" [--url http://localhost:8000]

Events (server-sent, ``data: {...}`` lines, ending with ``data: [DONE]``): ``response.output_text.delta`` carries
text, ``response.output_item.done`` one finished item (a tool call, its result, a message), ``response.completed``
the whole response with its ``usage``; ``{"error": ...}`` if the agent failed after the stream began.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import httpx


def events(url: str, question: str):
    payload = {"input": [{"role": "user", "content": question}], "stream": True}
    with httpx.stream("POST", f"{url.rstrip('/')}/invocations", json=payload, timeout=120) as response:
        if response.status_code != 200:
            response.read()
            raise SystemExit(f"error: HTTP {response.status_code}: {response.json()['error']['message']}")
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[len("data: ") :])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--url", default=os.environ.get("AGENT_SERVER_URL", "http://localhost:8000"))
    args = parser.parse_args()
    for event in events(args.url, args.question):
        kind = event.get("type")
        if kind == "response.output_text.delta":
            print(event["delta"], end="", flush=True)
        elif kind == "response.output_item.done" and event["item"]["type"] == "function_call":
            print(f"[tool call: {event['item']['name']}({event['item']['arguments']})]", flush=True)
        elif kind == "response.output_item.done" and event["item"]["type"] == "function_call_output":
            print(f"[tool result: {event['item']['output']}]", flush=True)
        elif kind == "response.completed":
            usage = event["response"].get("usage") or {}
            print(f"\nusage: {usage.get('input_tokens')} in, {usage.get('output_tokens')} out")
        elif "error" in event:
            print(f"\nerror: {event['error']}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
