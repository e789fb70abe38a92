"""Streaming: when the first text of an answer reaches the caller, streamed versus message/send, and what logging adds.

    .venv/bin/python benchmarks/streaming.py [--samples 40] [--work-ms 300] [--pace-ms 100]

Starts, all on 127.0.0.1: a real MLflow tracking server (SQLite, proxied artifacts) and the a2a-sdk 1.x test agent
(``tests/support/a2a_agents.py``), asked on its streaming face with ``[long:W] [chunks]``: W ms of working updates
(a tool call first), then the answer as an artifact sent word by word, 20 ms apart. Variants, interleaved at random,
sharing one ``AgentClient``:

* ``send``        - ``client.ask``: message/send, no logging; the first text is the whole answer;
* ``stream``      - ``client.stream``: message/stream, no logging;
* ``stream+log``  - ``logger.stream_question``: the same, recorded to MLflow in the background.

Reported per variant: median / p90 of the time until the first answer text reached the caller and until the answer
was complete; and what logging added to the streamed variant (same-run baseline: ``stream``).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, md_table, median, percentile, quiet_mlflow, start_server, write_result

from kagent_mlflow.config import Settings
from kagent_mlflow.logger import KagentMLflowLogger
from tests.support.a2a_agents import start_agent


def run(args: argparse.Namespace) -> str:
    quiet_mlflow()
    root = Path(tempfile.mkdtemp(prefix="kagent-mlflow-stream-"))
    print(f"starting MLflow server and A2A agent in {root} ...", flush=True)
    server = start_server(root / "mlflow")
    agent = start_agent()
    logger = None
    try:
        settings = Settings(
            a2a_url=agent.stream_url, tracking_uri=server.url, experiment_name="bench-stream", home=root / "home"
        )
        logger = KagentMLflowLogger(settings=settings)
        client = logger._client()
        recorder = logger.pipeline.recorder()
        prefix = f"[long:{args.work_ms}] [chunks]"

        def send(i: int) -> tuple[float, float]:
            with recorder.live_request():
                t0 = time.perf_counter()
                client.ask(f"{prefix} question {i}")
                done = time.perf_counter() - t0
                return done, done

        def timed(events: object, t0: float) -> tuple[float, float]:
            first = None
            for event in events:  # type: ignore[attr-defined]
                if first is None and event.text:
                    first = time.perf_counter() - t0
            done = time.perf_counter() - t0
            return (first if first is not None else done), done

        def stream(i: int) -> tuple[float, float]:
            with recorder.live_request():
                t0 = time.perf_counter()
                return timed(client.stream(f"{prefix} question {i}"), t0)

        def stream_log(i: int) -> tuple[float, float]:
            t0 = time.perf_counter()
            return timed(logger.stream_question(f"{prefix} question {i}"), t0)  # type: ignore[union-attr]

        variants = {"send": send, "stream": stream, "stream+log": stream_log}
        for i in range(3):  # imports, connections, experiment creation
            for fn in variants.values():
                fn(-1 - i)
        logger.flush(60)
        plan = [name for name in variants for _ in range(args.samples)]
        random.Random(args.random_seed).shuffle(plan)
        firsts: dict[str, list[float]] = {k: [] for k in variants}
        dones: dict[str, list[float]] = {k: [] for k in variants}
        print(f"{len(plan)} questions, {args.pace_ms} ms apart ...", flush=True)
        for i, name in enumerate(plan):
            first, done = variants[name](i)
            firsts[name].append(first * 1000)
            dones[name].append(done * 1000)
            time.sleep(args.pace_ms / 1000)
        delivered = logger.flush(120)
        return report(args, firsts, dones, delivered)
    finally:
        if logger is not None:
            logger.close(timeout=30)
        agent.stop()
        server.stop()


def report(args: argparse.Namespace, firsts: dict, dones: dict, delivered: bool) -> str:
    rows = []
    for name in firsts:
        first, done = firsts[name], dones[name]
        rows.append([name, str(len(first)), f"{median(first):.1f}", f"{percentile(first, 0.9):.1f}",
                     f"{median(done):.1f}", f"{percentile(done, 0.9):.1f}"])  # fmt: skip
    table = md_table(["variant", "n", "first text median ms", "p90", "complete median ms", "p90"], rows)
    added_first = median(firsts["stream+log"]) - median(firsts["stream"])
    added_done = median(dones["stream+log"]) - median(dones["stream"])
    gain = median(dones["send"]) - median(firsts["stream"])
    return (
        f"# Streaming: time to the first text\n\n{machine()}\n\n"
        f"Agent: a2a-sdk 1.x test agent, `[long:{args.work_ms}] [chunks]` (working updates for {args.work_ms} ms, then "
        f"the answer word by word, 20 ms apart); variants interleaved at random, {args.pace_ms} ms apart.\n\n"
        f"{table}\n\n"
        f"Streaming shows the first text {gain:.0f} ms sooner than message/send shows the answer (medians). "
        f"Logging added {added_first:+.2f} ms to the first text and {added_done:+.2f} ms to the complete answer "
        f"(medians, versus the same-run `stream` baseline). All records reached MLflow: {delivered}.\n\n"
        f"Command: `.venv/bin/python benchmarks/streaming.py {' '.join(sys.argv[1:])}`\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=40, help="questions per variant")
    parser.add_argument("--work-ms", type=int, default=300, help="how long the agent works before answering")
    parser.add_argument("--pace-ms", type=int, default=100)
    parser.add_argument("--random-seed", type=int, default=7)
    parser.add_argument("--out", default="streaming.md")
    args = parser.parse_args()
    text = run(args)
    print(text)
    print(f"written to {write_result(args.out, text)}")


if __name__ == "__main__":
    main()
