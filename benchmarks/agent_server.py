"""Agent Server under sustained load, tracing on: async handlers vs a blocking ``predict``, same run.

    .venv/bin/python benchmarks/agent_server.py [--duration 300] [--baseline-duration 60] [--concurrency 32]
                                                [--delay-ms 100] [--modes blocking,async] [--out ...]

Starts, all on 127.0.0.1: an MLflow tracking server (SQLite, one worker, proxied artifacts), the scripted model
server answering every chat completion after ``--delay-ms``, and per mode an Agent Server subprocess (``python -m
kagent_mlflow.serve``; ``--blocking`` registers the agent's sync ``predict`` directly, as a naive server would).
A load generator with ONE shared ``httpx.AsyncClient`` keeps ``--concurrency`` ``/invocations`` in flight for the
mode's duration, each request with its own ``X-Request-ID`` (the trace's ``request_id`` tag).

Per mode, side by side: requests/s; traces/s exported while under load (rows in MLflow's database, sampled); the
MLflow server's CPU per trace (psutil, its whole process tree, from load start until every trace is in); the Agent
Server's RSS after warm-up and its maximum later (growth); SIGTERM-to-exit time right after the load (backlog and
all) and what it exported/spilled; then the spill is exported (``kagent-mlflow replay``) and every request's trace
is looked up in MLflow with ``MlflowClient.search_traces``: none lost, none duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kagent_mlflow.serve import trace_spill  # noqa: E402
from tests.support.agent_server import start_agent_server  # noqa: E402
from tests.support.mlflow_server import start_mlflow_server  # noqa: E402
from tests.support.model_server import start_subprocess, stop_subprocess  # noqa: E402

QUESTION = {"input": [{"role": "user", "content": "How many pods are running in namespace prod?"}]}
KAGENT_MLFLOW = str(Path(sys.executable).with_name("kagent-mlflow"))
MODES: dict[str, list[str]] = {"blocking": ["--blocking"], "async": [], "async-outage": []}
# async-outage: MLflow is frozen (SIGSTOP) for --outage seconds from a third of the run, with a 2 MB memory limit:
# the backlog must spill to disk, RSS stay flat, and the exporters catch up at MLflow's own pace once it resumes.
OUTAGE_ENV = {"KAGENT_MLFLOW_TRACE_MEMORY_MB": "2"}


@dataclass
class Result:
    mode: str
    seconds: float
    ok_ids: list[str]
    errors: int
    latencies: list[float]
    traces_during_load: int = 0
    mlflow_cpu_s: float = 0.0
    traces_total: int = 0
    rss_warm_mb: float = 0.0
    rss_max_mb: float = 0.0
    rss_end_mb: float = 0.0
    shutdown_s: float = 0.0
    shutdown_line: str = ""
    drain_s: float = 0.0
    lost: int = 0
    duplicated: int = 0
    peak_rate: float = 0.0  # traces/s stored, best 10 s window
    max_spilled: int = 0
    # t, RSS MB, traces in MLflow, traces on disk, MLflow CPU and run-queue wait (% of one core) since the last sample
    timeline: list[tuple[float, float, int, int, float, float]] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return len(self.ok_ids) / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else 0.0


def tree_cpu(pid: int) -> float:
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


def tree_runqueue_wait(pid: int) -> float:
    """Seconds the threads of a process tree spent runnable but waiting for a CPU (Linux ``/proc/*/schedstat``)."""
    try:
        root = psutil.Process(pid)
        pids = [root.pid, *(p.pid for p in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for one in pids:
        for task in Path(f"/proc/{one}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return total / 1e9


def db_trace_count(db: Path, experiment_id: str) -> int:
    """Traces stored so far, read straight from MLflow's SQLite file (cheap enough to sample every few seconds)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute("SELECT count(*) FROM trace_info WHERE experiment_id = ?", (experiment_id,)).fetchone()[0]


async def load(url: str, mode: str, seconds: float, concurrency: int) -> tuple[list[str], int, list[float], float]:
    ok_ids: list[str] = []
    latencies: list[float] = []
    errors = 0
    counter = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                request_id = f"{mode}-{next(counter)}"
                start = time.perf_counter()
                try:
                    resp = await client.post(f"{url}/invocations", json=QUESTION, headers={"X-Request-ID": request_id})
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)
                if resp.status_code == 200:
                    ok_ids.append(request_id)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return ok_ids, errors, latencies, elapsed


def request_ids_in_mlflow(tracking_uri: str, experiment_id: str) -> collections.Counter:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    seen: collections.Counter = collections.Counter()
    token = None
    while True:
        page = client.search_traces(locations=[experiment_id], max_results=500, include_spans=False, page_token=token)
        seen.update(t.info.tags.get("request_id") for t in page)
        token = page.token
        if not token:
            return seen


def run_mode(mode: str, seconds: float, args: argparse.Namespace, model_root: str, mlflow, root: Path) -> Result:
    from mlflow import MlflowClient

    experiment = f"bench-agent-server-{mode}-{int(time.time())}"
    spill = root / f"spill-{mode}"
    env = {"KAGENT_MLFLOW_AGENT": "", "KAGENT_MLFLOW_TRACE_SPILL_DIR": str(spill)}
    env |= OUTAGE_ENV if mode == "async-outage" else {}
    env |= dict(kv.split("=", 1) for kv in args.server_env)
    server = start_agent_server(
        model_root, tracking_uri=mlflow.url, experiment=experiment, args=MODES[mode], extra_env=env
    )
    db = root / "mlflow.db"
    with httpx.Client(timeout=60) as client:  # warm-up: imports, connections, the experiment
        for i in range(5):
            client.post(f"{server.url}/invocations", json=QUESTION, headers={"X-Request-ID": f"{mode}-warm-{i}"})
    experiment_id = MlflowClient(tracking_uri=mlflow.url).get_experiment_by_name(experiment).experiment_id
    base = db_trace_count(db, experiment_id)
    proc = psutil.Process(server.process.pid)
    timeline: list[tuple[float, float, int, int, float, float]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        last = (time.monotonic(), tree_cpu(mlflow.proc.pid), tree_runqueue_wait(mlflow.proc.pid))
        while not stop.wait(2.0):
            try:
                rss = proc.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                return
            spilled = trace_spill.status(spill).traces
            try:
                stored = db_trace_count(db, experiment_id) - base
            except sqlite3.Error:  # MLflow frozen inside a write transaction
                stored = timeline[-1][2] if timeline else 0
            now, cpu, wait = time.monotonic(), tree_cpu(mlflow.proc.pid), tree_runqueue_wait(mlflow.proc.pid)
            busy, starved = ((cpu - last[1]) / (now - last[0]) * 100, (wait - last[2]) / (now - last[0]) * 100)
            last = (now, cpu, wait)
            timeline.append((now - t0, rss, stored, spilled, busy, starved))

    def outage() -> None:
        if stop.wait(seconds / 3):
            return
        os.killpg(mlflow.proc.pid, signal.SIGSTOP)
        try:
            stop.wait(args.outage)
        finally:
            os.killpg(mlflow.proc.pid, signal.SIGCONT)

    sampler = threading.Thread(target=sample, daemon=True)
    mcpu0 = tree_cpu(mlflow.proc.pid)
    sampler.start()
    if mode == "async-outage":
        threading.Thread(target=outage, daemon=True).start()
    ok_ids, errors, latencies, elapsed = asyncio.run(load(server.url, mode, seconds, args.concurrency))
    stop.set()
    sampler.join()
    result = Result(mode, elapsed, ok_ids, errors, latencies, timeline=timeline)
    result.traces_during_load = db_trace_count(db, experiment_id) - base

    warm = min(args.warmup, seconds / 5)
    after = [rss for t, rss, *_ in timeline if t >= warm]
    result.max_spilled = max((row[3] for row in timeline), default=0)
    for i, (t, _, stored, *_) in enumerate(timeline):
        later = [(t2, s2) for t2, _, s2, *_ in timeline[i + 1 :] if t2 - t >= 10]
        if later:
            result.peak_rate = max(result.peak_rate, (later[0][1] - stored) / (later[0][0] - t))
    result.rss_warm_mb = after[0] if after else 0.0
    result.rss_max_mb = max(after) if after else 0.0
    result.rss_end_mb = after[-1] if after else 0.0

    started = time.monotonic()  # SIGTERM with whatever backlog there is
    os.killpg(server.process.pid, signal.SIGTERM)
    server.process.wait(timeout=120)
    result.shutdown_s = time.monotonic() - started
    result.shutdown_line = next((line.strip() for line in server.output if "traces at shutdown" in line), "")
    time.sleep(0.5)

    drain_start = time.monotonic()
    replay = subprocess.run(
        [KAGENT_MLFLOW, "replay"], env={**os.environ, **env}, capture_output=True, text=True, timeout=900
    )
    if replay.returncode != 0:
        print(f"  replay: {replay.stdout[-500:]} {replay.stderr[-500:]}", flush=True)
    expected = len(ok_ids) + 5
    deadline = time.monotonic() + 300
    while db_trace_count(db, experiment_id) < expected and time.monotonic() < deadline:
        time.sleep(1)
    result.drain_s = time.monotonic() - drain_start
    result.mlflow_cpu_s = tree_cpu(mlflow.proc.pid) - mcpu0
    result.traces_total = db_trace_count(db, experiment_id) - base
    seen = request_ids_in_mlflow(mlflow.url, experiment_id)
    result.lost = sum(1 for rid in ok_ids if rid not in seen)
    result.duplicated = sum(1 for n in seen.values() if n > 1)
    for line in [line.rstrip() for line in server.output if "WARNING" in line or "ERROR" in line][:8]:
        print(f"  server: {line[:300]}", flush=True)
    return result


def report(results: list[Result], args: argparse.Namespace, started: str, load_before: float) -> str:
    base = next((r for r in results if r.mode == "blocking"), None)
    lines = [
        "# Agent Server benchmark: sustained load with tracing",
        "",
        f"Run {started} on {platform.node()} ({os.cpu_count()} CPUs, Python {platform.python_version()}), "
        f"load average before: {load_before:.2f}.",
        "",
        f"Command: `.venv/bin/python benchmarks/agent_server.py --duration {args.duration:g} "
        f"--baseline-duration {args.baseline_duration:g} --concurrency {args.concurrency} "
        f"--delay-ms {args.delay_ms:g} --modes {args.modes}"
        + (f" --outage {args.outage:g}`" if "async-outage" in args.modes else "`"),
        "",
        f"`/invocations` with {args.concurrency} in flight (one shared httpx client) to the built-in agent; the model "
        f"answers after {args.delay_ms:g} ms. Traces go to a local MLflow server (SQLite, one worker) on the same "
        "machine. `blocking` = the agent's sync `predict` registered directly (the naive way); `async` = our handlers.",
        "",
        "| mode | s | req/s | vs blocking | p50 ms | p99 ms | errors | traces/s exported under load "
        "| peak traces/s (10 s) | MLflow CPU ms/trace | RSS after warm-up MB | RSS max MB | RSS growth "
        "| most on disk | SIGTERM -> exit s | traces in MLflow | lost | duplicated |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.rps / base.rps:.1f}x" if base else "-"
        growth = (r.rss_max_mb - r.rss_warm_mb) / r.rss_warm_mb * 100 if r.rss_warm_mb else 0.0
        cpu_per_trace = r.mlflow_cpu_s / r.traces_total * 1000 if r.traces_total else 0.0
        lines.append(
            f"| {r.mode} | {r.seconds:.0f} | {r.rps:.1f} | {ratio} | {r.pct(0.5) * 1000:.0f} | "
            f"{r.pct(0.99) * 1000:.0f} | {r.errors} | {r.traces_during_load / r.seconds:.1f} | {r.peak_rate:.1f} | "
            f"{cpu_per_trace:.1f} | {r.rss_warm_mb:.0f} | {r.rss_max_mb:.0f} | {growth:+.0f} % | {r.max_spilled} | "
            f"{r.shutdown_s:.1f} | "
            f"{r.traces_total}/{len(r.ok_ids) + 5} | {r.lost} | {r.duplicated} |"
        )
    lines += [
        "",
        "- *traces/s exported under load*: traces stored in MLflow between the start and the end of the load, per "
        "second (MLflow's own capacity for this trace shape is ~1000 / *MLflow CPU ms/trace* per core).",
        "- *peak traces/s*: the best 10 s of storing (after an outage: how fast the backlog is caught up); *most on "
        "disk*: the largest number of traces waiting in the trace spill at one time (sampled).",
        "- *MLflow CPU ms/trace*: CPU of the MLflow server's process tree from the start of the load until every "
        "trace was in, divided by the traces stored.",
        f"- *RSS*: the Agent Server process, sampled every 2 s; *after warm-up* = first sample after {args.warmup:g} s "
        "(or a fifth of the run), *growth* = max after warm-up vs that sample.",
        "- *SIGTERM -> exit*: sent right at the end of the load, backlog and all; what was not exported in the grace "
        "time was written to the trace spill and exported afterwards by `kagent-mlflow replay`.",
        "- *traces in MLflow*: stored / expected (5 warm-up + every answered request); *lost* = answered requests "
        "whose `request_id` tag is not found by `MlflowClient.search_traces`, *duplicated* = tags found twice.",
        "",
        "Shutdown log lines:",
        "",
    ]
    lines += [f"- {r.mode}: `{r.shutdown_line.split(': ', 1)[-1]}`" for r in results]
    for r in results:
        if r.mode != "blocking":
            lines += [
                "",
                f"Timeline ({r.mode}): t, Agent Server RSS, traces stored in MLflow, traces waiting on disk; the "
                "MLflow server's CPU and its threads' time runnable but waiting for a CPU over the last 2 s (% of one "
                "core): high *waiting* means MLflow, not our exporter, is what holds the traces back (the machine's "
                "CPUs are busy)",
                "",
            ]
            step = max(1, len(r.timeline) // 20)
            lines += [
                f"- {t:.0f} s: {rss:.0f} MB, {n} stored, {d} on disk, MLflow CPU {busy:.0f} %, waiting {wait:.0f} %"
                for t, rss, n, d, busy, wait in r.timeline[::step]
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load for the async mode")
    parser.add_argument("--baseline-duration", type=float, default=60.0, help="seconds of load for blocking")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline sample")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds MLflow is frozen in async-outage")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--modes", default="blocking,async", help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--server-env", action="append", default=[], help="NAME=VALUE for the Agent Server (repeat)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "agent_server.md"))
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="bench-agent-server-") as tmp:
        root = Path(tmp)
        os.environ["KAGENT_MLFLOW_HOME"] = str(root / "home")  # never the user's spool or spill
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
                seconds = args.baseline_duration if mode == "blocking" else args.duration
                print(f"mode {mode} ({seconds:g} s) ...", flush=True)
                results.append(run_mode(mode, seconds, args, model.root, mlflow, root))
                r = results[-1]
                print(
                    f"  {r.rps:.1f} req/s, {r.traces_during_load / r.seconds:.1f} traces/s, RSS {r.rss_warm_mb:.0f}"
                    f"->{r.rss_max_mb:.0f} MB, SIGTERM {r.shutdown_s:.1f} s, lost {r.lost}, dup {r.duplicated}",
                    flush=True,
                )
        finally:
            stop_subprocess(model)
            mlflow.stop()

    text = report(results, args, started, load_before)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
