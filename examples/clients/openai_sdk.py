"""Talk to the agent with the OpenAI SDK: ``client.responses.create`` with ``base_url`` pointed at the server.

    python examples/clients/openai_sdk.py "Which pods run in prod?" [--url http://localhost:8000]

Runs two turns: the question, then a follow-up that sends the first turn's output back as history.
"""

from __future__ import annotations

import argparse
import os
import sys

import openai


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--follow-up", default="Thanks. Summarise that in one sentence.")
    parser.add_argument("--url", default=os.environ.get("AGENT_SERVER_URL", "http://localhost:8000"))
    args = parser.parse_args()

    # The Agent Server serves the Responses API at /responses; the SDK appends that to base_url.
    # The server needs no key and ignores `model` (it serves one agent), but the SDK wants both.
    client = openai.OpenAI(base_url=args.url, api_key="unused", max_retries=0)
    try:
        first = client.responses.create(model="kagent-agent", input=args.question)
        print("answer:", first.output_text)
        print(f"usage: {first.usage.input_tokens} in, {first.usage.output_tokens} out")

        history = [{"role": "user", "content": args.question}]
        history += [item.model_dump(exclude_none=True) for item in first.output]
        history.append({"role": "user", "content": args.follow_up})
        second = client.responses.create(model="kagent-agent", input=history)
        print("follow-up:", second.output_text)
    except openai.APIStatusError as exc:
        print(f"error: HTTP {exc.status_code}: {exc.message}", file=sys.stderr)
        return 1
    except openai.APIConnectionError:
        print(f"error: cannot reach the agent server at {args.url}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
