"""What the A2A face costs on top of ``/invocations``: the same agent, the same server, the same run.

    .venv/bin/python benchmarks/a2a_face.py [--requests 300] [--concurrency 32] [--seconds 20] [--out ...]

Starts, on 127.0.0.1, the scripted model server (answers at once) and one Agent Server (``python -m
kagent_mlflow.serve``, tracing off so that only the request path is measured). Then, with one shared
``httpx.AsyncClient``:

- latency: ``--requests`` rounds, each sending one question through every route in turn (``/invocations``, A2A 0.3
  ``message/send``, A2A 1.0 ``SendMessage``, ``/invocations`` with ``"stream": true`` and A2A 0.3 ``message/stream``,
  both read to their last event), so load drift hits every route alike; median and p99 per route, and each route's
  difference to its baseline (``/invocations``, or its streamed form for the streams);
- throughput: ``--concurrency`` requests kept in flight for ``--seconds`` on ``/invocations``, then on A2A 0.3
  ``message/send``; requests/s each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.agent_server import start_agent_server  # noqa: E402
from tests.support.model_server import start_subprocess, stop_subprocess  # noqa: E402

QUESTION = "How many pods are running in namespace prod?"


def a2a_body(method: str) -> tuple[dict, dict]:
    if method in ("message/send", "message/stream"):
        message = {"kind": "message", "role": "user", "parts": [{"kind": "text", "text": QUESTION}]}
        headers = {}
    else:
        message = {"role": "ROLE_USER", "parts": [{"text": QUESTION}]}
        headers = {"A2A-Version": "1.0"}
    message["messageId"] = uuid.uuid4().hex
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"message": message}}, headers


def routes(client: httpx.AsyncClient, base: str) -> dict[str, Callable[[], Awaitable[None]]]:
    async def invocations() -> None:
        response = await client.post(f"{base}/invocations", json={"input": [{"role": "user", "content": QUESTION}]})
        assert response.status_code == 200, response.text

    async def invocations_stream() -> None:
        body = {"input": [{"role": "user", "content": QUESTION}], "stream": True}
        async with client.stream("POST", f"{base}/invocations", json=body) as response:
            last = ""
            async for line in response.aiter_lines():
                last = line or last
        assert last == "data: [DONE]", last

    def a2a(method: str) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            body, headers = a2a_body(method)
            if method == "message/stream":
                async with client.stream("POST", f"{base}/a2a/", json=body, headers=headers) as response:
                    last = ""
                    async for line in response.aiter_lines():
                        last = line or last
                assert '"completed"' in last, last
                return
            response = await client.post(f"{base}/a2a/", json=body, headers=headers)
            assert "result" in response.json(), response.text

        return send

    return {
        "/invocations": invocations,
        "A2A 0.3 message/send": a2a("message/send"),
        "A2A 1.0 SendMessage": a2a("SendMessage"),
        "/invocations stream": invocations_stream,
        "A2A 0.3 message/stream": a2a("message/stream"),
    }


async def latency(base: str, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    async with httpx.AsyncClient(timeout=60) as client:
        calls = routes(client, base)
        for call in calls.values():  # warm-up: first-request imports and connection set-up
            for _ in range(5):
                await call()
        for _ in range(rounds):
            for name, call in calls.items():
                started = time.perf_counter()
                await call()
                times.setdefault(name, []).append((time.perf_counter() - started) * 1000)
    return times


async def throughput(base: str, name: str, concurrency: int, seconds: float) -> float:
    done = 0
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        call = routes(client, base)[name]
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await call()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.monotonic() - started)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="latency rounds (one request per route each)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of load per route for throughput")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "a2a_face.md"))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    model = start_subprocess()
    server = start_agent_server(model.root)  # no tracking URI: tracing off
    try:
        times = asyncio.run(latency(server.url, args.requests))
        rps = {
            name: asyncio.run(throughput(server.url, name, args.concurrency, args.seconds))
            for name in ("/invocations", "A2A 0.3 message/send")
        }
    finally:
        server.stop()
        stop_subprocess(model)
    medians = {name: statistics.median(values) for name, values in times.items()}
    lines = [
        "# A2A face vs /invocations (same server, same run)",
        "",
        f"`python benchmarks/a2a_face.py --requests {args.requests} --concurrency {args.concurrency} "
        f"--seconds {args.seconds:g}` on {platform.node()} ({os.cpu_count()} cores, load {load_before:.1f} before); "
        "instant scripted model, tracing off.",
        "",
        "| route | median ms | p99 ms | median vs baseline |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        baseline = "/invocations stream" if "stream" in name else "/invocations"
        diff = "baseline" if name == baseline else f"{medians[name] - medians[baseline]:+.2f} ms"
        lines.append(f"| {name} | {medians[name]:.2f} | {pct(values, 0.99):.2f} | {diff} |")
    lines += ["", f"| {args.concurrency} in flight | requests/s |", "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in rps.items()]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
