"""Ask the multi-agent example a question and show the answer, the delegations, token usage and the trace id.

    python examples/multi_agent/run.py "Why does the web app in namespace shop keep crashing?"
    python examples/multi_agent/run.py --router "How do I expose a service with a route?"
    python examples/multi_agent/run.py --stream "..."

Model: LLAMA_STACK_BASE_URL, LLAMA_STACK_MODEL, LLAMA_STACK_API_KEY. Traces: MLFLOW_TRACKING_URI and
MLFLOW_EXPERIMENT_NAME (default experiment "multi-agent-example").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlflow  # noqa: E402
from agents import build_router, build_supervisor  # noqa: E402

from kagent_mlflow.agent import ModelError, final_text  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--router", action="store_true", help="route to one specialist instead of supervising")
    parser.add_argument(
        "--stream", action="store_true", help="print the specialists' and the answer's text as it is generated"
    )
    args = parser.parse_args()

    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "multi-agent-example"))
    agent = build_router() if args.router else build_supervisor()
    request = {"input": [{"role": "user", "content": args.question}]}
    try:
        if args.stream:
            response, speaker = None, "nobody yet"
            for event in agent.predict_stream(request):
                if event.type == "response.output_text.delta":
                    who = getattr(event, "agent", None)  # specialists stream too, tagged with their name
                    if who != speaker and speaker != "nobody yet":
                        print()  # one line per speaker
                    speaker = who
                    print(event.delta, end="", flush=True)
                elif event.type == "response.completed":
                    response = event.response
            print()
        else:
            response = agent.predict(request).model_dump(exclude_none=True)
            print(final_text(response))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    for item in response["output"]:
        if item["type"] == "function_call":
            print(f"  -> {item['name']}({item['arguments']})")
    usage = response.get("usage") or {}
    counts = (usage.get(k) for k in ("input_tokens", "output_tokens", "total_tokens"))
    print("usage: input={} output={} total={}".format(*counts))
    mlflow.flush_trace_async_logging()
    print(f"trace: {mlflow.get_last_active_trace_id()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
