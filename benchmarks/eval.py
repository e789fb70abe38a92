"""`kagent-mlflow eval` against a bare baseline, same run: answering wall time, time until everything is queryable,
MLflow server CPU per recorded question, records/s versus the seed's way, peak RSS.

    .venv/bin/python benchmarks/eval.py [--questions 1000] [--concurrency 32] [--agent-ms 50] [--seed-records 20]

Starts a real MLflow server (SQLite, proxied artifacts, ONE worker) and the a2a-sdk 1.x test agent
(``tests/support/a2a_agents.py``, each question ``[slow:MS] ...`` answered after MS ms), then, each in a fresh child
process so its peak RSS is its own:

1. baseline: the same ``AgentClient`` sends the same questions at the same concurrency, records nothing;
2. eval: ``run_eval`` (what the ``eval`` command runs; one ``contains`` scorer, so one assessment per question):
   answering wall time (first question to last answer), then the time until every trace and score is in MLflow;
3. baseline again (load drifts on a shared machine: the ratio uses the mean of the two);
4. seed-style: ``--seed-records`` records logged the seed's way (``_common.seed_style_log``), one after another.

The MLflow server's CPU (its whole process tree, psutil) is read before and after steps 2 and 4. After step 2 the
parent counts the traces linked to the run and their assessments through MLflow's API.

Prints a markdown report and writes it to benchmarks/results/eval.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _common import (
    REPO,
    machine,
    md_table,
    quiet_mlflow,
    sample_interaction,
    seed_style_log,
    start_server,
    write_result,
)


def tree_cpu(pid: int) -> float:
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


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def questions_file(path: Path, count: int, agent_ms: int) -> Path:
    rows = [
        {"id": f"q{i:05d}", "question": f"[slow:{agent_ms}] question {i}", "expected": f"question {i}"}
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- children ---------------------------------------------------------------------------------------------------------


def child_baseline(args: argparse.Namespace) -> None:
    from kagent_mlflow.a2a.client import AgentClient

    questions = [json.loads(line)["question"] for line in Path(args.questions_path).read_text().splitlines()]
    client = AgentClient(args.agent_url, timeout=60)
    client.connect()

    from kagent_mlflow.errors import AgentProtocolError, AgentUnreachableError

    retried = 0

    async def main() -> float:
        nonlocal retried
        work = list(reversed(questions))

        async def worker() -> None:
            nonlocal retried
            while work:
                question = work.pop()
                for attempt in range(3):  # the same retries as eval's (a loaded agent resets a keep-alive now and then)
                    try:
                        await client.aask(question, timeout=60)
                        break
                    except (AgentUnreachableError, AgentProtocolError):
                        if attempt == 2:
                            raise
                        retried += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return time.monotonic() - started

    wall = asyncio.run(main())
    client.close()
    print(json.dumps({"wall_s": wall, "rss_mb": rss_mb(), "retried": retried}))


def child_eval(args: argparse.Namespace) -> None:
    quiet_mlflow()
    from kagent_mlflow.config import Settings
    from kagent_mlflow.evaluate.runner import EvalConfig, run_eval
    from kagent_mlflow.evaluate.targets import parse_target

    settings = Settings(tracking_uri=args.tracking_uri, experiment_name=args.experiment, home=Path(args.home))
    config = EvalConfig(
        dataset=args.questions_path,
        targets=[parse_target(f"bench={args.agent_url}")],
        settings=settings,
        concurrency=args.concurrency,
        timeout=60,
        scorers=["contains"],
        progress=False,
    )
    result = run_eval(config, lambda line: None)
    print(
        json.dumps(
            {
                "answering_s": result.answering_s,
                "recording_s": result.recording_s,
                "unrecorded": result.unrecorded,
                "run_id": result.run_ids["bench"],
                "experiment_id": result.experiment_id,
                "rss_mb": rss_mb(),
            }
        )
    )


def run_child(kind: str, args: argparse.Namespace, **extra: str) -> dict:
    argv = [sys.executable, __file__, "--child", kind, "--agent-url", args.agent_url]
    argv += ["--questions-path", args.questions_path, "--concurrency", str(args.concurrency)]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", value]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def count_recorded(tracking_uri: str, experiment_id: str, run_id: str) -> tuple[int, int]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    traces, assessments, token = 0, 0, None
    while True:
        page = client.search_traces(locations=[experiment_id], run_id=run_id, max_results=500, page_token=token)
        traces += len(page)
        assessments += sum(len(t.info.assessments or []) for t in page)
        token = page.token
        if not token:
            return traces, assessments


# -- parent -----------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--agent-ms", type=int, default=50)
    parser.add_argument("--seed-records", type=int, default=20)
    parser.add_argument("--child", choices=["baseline", "eval"])
    parser.add_argument("--agent-url")
    parser.add_argument("--questions-path")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--experiment")
    parser.add_argument("--home")
    parser.add_argument("--out", default="eval.md")
    args = parser.parse_args()
    if args.child == "baseline":
        return child_baseline(args)
    if args.child == "eval":
        return child_eval(args)

    quiet_mlflow()
    sys.path.insert(0, str(REPO))
    from tests.support.a2a_agents import start_agent

    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    server = start_server(tmp / "mlflow", workers=1)
    agent = start_agent()
    try:
        args.agent_url = agent.url
        args.questions_path = str(questions_file(tmp / "questions.jsonl", args.questions, args.agent_ms))
        run_child("baseline", args)  # warm-up: agent and page cache
        base1 = run_child("baseline", args)
        cpu0 = tree_cpu(server.proc.pid)
        ours = run_child("eval", args, tracking_uri=server.url, experiment="bench-eval", home=str(tmp / "home"))
        eval_cpu = tree_cpu(server.proc.pid) - cpu0
        base2 = run_child("baseline", args)
        traces, assessments = count_recorded(server.url, ours["experiment_id"], ours["run_id"])

        record = sample_interaction(0, "bench-seed")
        seed_style_log(server.url, record)  # warm-up (experiment, connections)
        cpu0, started = tree_cpu(server.proc.pid), time.monotonic()
        for i in range(args.seed_records):
            seed_style_log(server.url, sample_interaction(i, "bench-seed"))
        seed_wall = time.monotonic() - started
        seed_cpu = tree_cpu(server.proc.pid) - cpu0
    finally:
        agent.stop()
        server.stop()

    baseline = (base1["wall_s"] + base2["wall_s"]) / 2
    n = args.questions
    ours_cpu_ms = eval_cpu / n * 1000
    seed_cpu_ms = seed_cpu / args.seed_records * 1000
    ours_rate = n / (ours["answering_s"] + ours["recording_s"])
    ours_capacity = 1000 / ours_cpu_ms
    seed_rate = args.seed_records / seed_wall
    seed_capacity = 1000 / seed_cpu_ms
    rows = [
        ["answering wall, eval", f"{ours['answering_s']:.2f} s", ""],
        ["answering wall, bare baseline (mean of before/after)", f"{baseline:.2f} s",
         f"{base1['wall_s']:.2f} / {base2['wall_s']:.2f} s"],
        ["eval / baseline", f"{ours['answering_s'] / baseline:.2f}x", "target <= 1.15x"],
        ["all traces + scores queryable after the last answer", f"{ours['recording_s']:.1f} s", "target <= 15 s"],
        ["traces linked to the run / assessments read back", f"{traces} / {assessments}", f"expected {n} / {n}"],
        ["MLflow server CPU per recorded question, eval", f"{ours_cpu_ms:.1f} ms", "target <= 10 ms (all included)"],
        ["MLflow server CPU per record, seed-style", f"{seed_cpu_ms:.1f} ms", ""],
        ["records/s, eval (questions / (answering + recording))", f"{ours_rate:.0f}", "bounded by the agent here"],
        ["records/s, seed-style (one after another)", f"{seed_rate:.1f}", ""],
        ["records/s one server core can take (1 / CPU per record): eval vs seed",
         f"{ours_capacity:.0f} vs {seed_capacity:.1f}", f"{ours_capacity / seed_capacity:.1f}x (target >= 10x)"],
        ["records/s achieved: eval vs seed-style", f"{ours_rate:.0f} vs {seed_rate:.1f}",
         f"{ours_rate / seed_rate:.1f}x"],
        ["peak RSS, eval / baseline", f"{ours['rss_mb']:.0f} / {base1['rss_mb']:.0f} MB", ""],
    ]  # fmt: skip
    text = (
        f"# eval benchmark\n\n{machine()}\n\n"
        f"{n} questions, concurrency {args.concurrency}, A2A agent answering in {args.agent_ms} ms, one `contains` "
        f"scorer (one assessment per question); MLflow server: SQLite, 1 worker, same machine.\n\n"
        f"Command: `python benchmarks/eval.py --questions {n} --concurrency {args.concurrency} "
        f"--agent-ms {args.agent_ms} --seed-records {args.seed_records}`\n\n"
        + md_table(["measure", "value", "note"], rows)
        + "\n"
    )
    print(text)
    write_result(args.out, text)


if __name__ == "__main__":
    main()
