"""Agent Server concurrency benchmark: async handlers vs a blocking ``predict``, tracing on, same run.

    .venv/bin/python benchmarks/agent_server.py [--requests 320] [--concurrency 32] [--delay-ms 100]
                                                [--modes blocking,async] [--out benchmarks/results/agent_server.md]

Starts, all on 127.0.0.1: an MLflow tracking server (SQLite, proxied artifacts), the scripted model server answering
every chat completion after ``--delay-ms``, and for each mode an Agent Server subprocess (``python -m
kagent_mlflow.serve``; ``--blocking`` registers the agent's sync ``predict`` directly, as a naive server would).
A load generator with ONE shared ``httpx.AsyncClient`` keeps ``--concurrency`` ``/invocations`` in flight.

Reported per mode: requests/s, p50/p95/p99 latency, the server's own wall time per request beyond the model's
(single-request latency minus the model delay, median of sequential requests), CPU seconds per request of the
Agent Server and of the MLflow server processes, and how many traces reached MLflow.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.agent_server import start_agent_server  # noqa: E402
from tests.support.mlflow_server import start_mlflow_server  # noqa: E402
from tests.support.model_server import start_subprocess, stop_subprocess  # noqa: E402

QUESTION = {"input": [{"role": "user", "content": "How many pods are running in namespace prod?"}]}


@dataclass
class Result:
    mode: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    single: list[float]
    server_cpu: float
    mlflow_cpu: float
    traces: int | None
    drain: float | None
    expected_traces: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user+system) of a process and its children."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


async def _load(url: str, total: int, concurrency: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                resp = await client.post(f"{url}/invocations", json=QUESTION)
                latencies.append(time.perf_counter() - start)
                if resp.status_code != 200:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return latencies, errors, elapsed


def _sequential(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=60) as client:
        for _ in range(n):
            start = time.perf_counter()
            client.post(f"{url}/invocations", json=QUESTION).raise_for_status()
            out.append(time.perf_counter() - start)
    return out


def _count_traces(tracking_uri: str, experiment: str, expected: int, wait_s: float = 60.0) -> int | None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    deadline = time.monotonic() + wait_s
    count = 0
    while time.monotonic() < deadline:
        limit = min(expected + 100, 500)
        traces = client.search_traces(locations=[exp.experiment_id], max_results=limit, include_spans=False)
        count = len(traces)
        if count >= expected:
            break
        time.sleep(1)
    return count


# mode -> (server flags, server env, tracing on?)
MODES: dict[str, tuple[list[str], dict[str, str], bool]] = {
    "blocking": (["--blocking"], {}, True),
    "async": ([], {}, True),
    # MLflow's own export batching (5 spans / 5 s) instead of ours (100 spans / 1 s): what our default saves
    "async-mlflow-batching": (
        [],
        {
            "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE": "5",
            "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS": "5000",
        },
        True,
    ),
    "async-no-tracing": ([], {}, False),
}


def run_mode(mode: str, args: argparse.Namespace, model_root: str, mlflow_url: str, mlflow_pid: int) -> Result:
    experiment = f"bench-agent-server-{mode}-{int(time.time())}"
    flags, mode_env, tracing = MODES[mode]
    tracing = tracing and not args.no_tracing
    extra_env = {"KAGENT_MLFLOW_AGENT": "", **mode_env, **dict(kv.split("=", 1) for kv in args.server_env)}
    server = start_agent_server(
        model_root,
        tracking_uri=mlflow_url if tracing else None,
        experiment=experiment,
        args=flags,
        extra_env=extra_env,
    )
    expected = 5 + args.single + args.requests
    try:
        _sequential(server.url, 5)  # warm-up: imports, connections, first trace export
        single = _sequential(server.url, args.single)
        if tracing:
            _count_traces(mlflow_url, experiment, 5 + args.single)  # let the warm-up traces drain first
        cpu0, mcpu0 = _tree_cpu(server.process.pid), _tree_cpu(mlflow_pid)
        latencies, errors, elapsed = asyncio.run(_load(server.url, args.requests, args.concurrency))
        drain_start = time.perf_counter()
        traces = _count_traces(mlflow_url, experiment, expected, wait_s=180) if tracing else None
        drain = time.perf_counter() - drain_start
        cpu1, mcpu1 = _tree_cpu(server.process.pid), _tree_cpu(mlflow_pid)
    finally:
        server.stop()
        warnings = [line.rstrip() for line in server.output if "WARNING" in line or "ERROR" in line]
        for line in warnings[:10]:
            print(f"  server: {line[:300]}", flush=True)
    return Result(
        mode=mode,
        requests=args.requests,
        errors=errors,
        seconds=elapsed,
        latencies=latencies,
        single=single,
        server_cpu=(cpu1 - cpu0) / args.requests,
        mlflow_cpu=(mcpu1 - mcpu0) / args.requests,
        traces=traces,
        drain=drain if tracing else None,
        expected_traces=expected,
    )


def report(results: list[Result], args: argparse.Namespace, started: str) -> str:
    base = next((r for r in results if r.mode == "blocking"), None)
    lines = [
        "# Agent Server concurrency benchmark",
        "",
        f"Run {started} on {platform.node()} ({os.cpu_count()} CPUs, Python {platform.python_version()}), "
        f"load average before: {os.getloadavg()[0]:.2f}.",
        "",
        f"Command: `.venv/bin/python benchmarks/agent_server.py --requests {args.requests} "
        f"--concurrency {args.concurrency} --delay-ms {args.delay_ms:g} --modes {args.modes}"
        + (" --no-tracing`" if args.no_tracing else "`"),
        "",
        f"{args.requests} `/invocations` with {args.concurrency} in flight (one shared httpx client) to the built-in "
        f"agent; the model answers after {args.delay_ms:g} ms. Tracing to a local MLflow server (SQLite, one worker) "
        "on the same machine, except in `async-no-tracing`. Modes: `blocking` = the agent's sync `predict` registered "
        "directly (MLflow runs it on the event loop); `async` = our handlers (`apredict`), our trace batching; "
        "`async-mlflow-batching` = the same with MLflow's default span batching; `async-no-tracing` = tracing off.",
        "",
        "| mode | req/s | vs blocking | p50 ms | p95 ms | p99 ms | own ms/req (single) | server CPU ms/req "
        "| MLflow CPU ms/req | errors | traces | trace drain s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.rps / base.rps:.1f}x" if base else "-"
        own = statistics.median(r.single) * 1000 - args.delay_ms
        traces = "-" if r.traces is None else f"{r.traces}/{r.expected_traces}"
        drain = "-" if r.drain is None else f"{r.drain:.1f}"
        lines.append(
            f"| {r.mode} | {r.rps:.1f} | {ratio} | {r.pct(0.5) * 1000:.0f} | {r.pct(0.95) * 1000:.0f} "
            f"| {r.pct(0.99) * 1000:.0f} | {own:.1f} | {r.server_cpu * 1000:.1f} | {r.mlflow_cpu * 1000:.1f} "
            f"| {r.errors} | {traces} | {drain} |"
        )
    lines += [
        "",
        "- *own ms/req (single)*: median latency of sequential single requests minus the model's delay: the time the "
        "Agent Server (validation, agent loop, tracing, HTTP) adds to one answer.",
        "- *server CPU ms/req*: CPU the Agent Server process used from the start of the load until its traces were all"
        " in MLflow, per request (answering + exporting traces).",
        "- *MLflow CPU ms/req*: the same for the MLflow tracking server (trace ingestion).",
        "- *traces*: traces found in the run's experiment (warm-up + single + load requests); *trace drain s*: how long"
        " after the last answer the last trace arrived (export runs in the background, off the answer's path).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--single", type=int, default=20, help="sequential requests for the per-request overhead")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--no-tracing", action="store_true", help="tracing off in every mode")
    parser.add_argument("--server-env", action="append", default=[], help="NAME=VALUE for the Agent Server (repeat)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "agent_server.md"))
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    with tempfile.TemporaryDirectory(prefix="bench-agent-server-") as tmp:
        root = Path(tmp)
        print("starting MLflow server ...", flush=True)
        mlflow = start_mlflow_server(
            f"sqlite:///{root / 'mlflow.db'}",
            artifacts_args=["--artifacts-destination", str(root / "artifacts")],
            log_path=root / "mlflow.log",
        )
        model = start_subprocess(delay_ms=args.delay_ms)
        results = []
        try:
            for mode in args.modes.split(","):
                print(f"mode {mode} ...", flush=True)
                assert mlflow.proc is not None
                results.append(run_mode(mode, args, model.root, mlflow.url, mlflow.proc.pid))
                r = results[-1]
                print(f"  {r.rps:.1f} req/s, p50 {r.pct(0.5) * 1000:.0f} ms, errors {r.errors}", flush=True)
        finally:
            stop_subprocess(model)
            mlflow.stop()

    text = report(results, args, started)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
