"""Issue 8, Why #1: every record reaches the MLflow it was meant for, and nowhere else.

Real components: an a2a-sdk agent, real ``mlflow server`` processes (one kept down, then started), the embedded
local store, the ``kagent-mlflow`` CLI as a subprocess. Each test reads back what a user would: runs by their
``interaction_id`` tag in each store, and ``kagent-mlflow status --json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kagent_mlflow.config import Settings
from kagent_mlflow.delivery import Spool
from kagent_mlflow.logger import KagentMLflowLogger
from kagent_mlflow.records import Destination, Interaction
from tests.support.a2a_agents import A2AAgent, BadServer, answer_for
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("kagent-mlflow")
_CLIENT_ENV = ("MLFLOW_", "AWS_", "A2A_", "KAGENT_MLFLOW_SPOOL_DIR")


def cli(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``kagent-mlflow ARGS`` with only ``home`` configured (no tracking URI, experiment or keys from the shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_ENV)}
    env["KAGENT_MLFLOW_HOME"] = str(home)
    done = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def runs_of(tracking_uri: str, interaction_id: str) -> list:
    """Every run, in any experiment of the store, tagged with ``interaction_id``."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not ids:
        return []
    return list(client.search_runs(ids, f"tags.interaction_id = '{interaction_id}'", run_view_type=ViewType.ALL))


def local_store(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"


def waiting(home: Path) -> dict[tuple[str | None, str], int]:
    done = cli(home, "status", "--json")
    assert done.returncode == 0, done.stderr
    return {(d["tracking_uri"], d["experiment"]): d["pending"] for d in json.loads(done.stdout)["destinations"]}


def ask_for_dead_server(home: Path, agent: A2AAgent, tracking_uri: str, experiment: str) -> str:
    """`ask --tracking-uri <server that is down>`: answered, record spooled for that server. Returns its id."""
    question = f"Where does my record go {uuid.uuid4().hex[:8]}?"
    done = cli(
        home,
        *("ask", question, "--json", "--a2a-url", agent.url, "--tracking-uri", tracking_uri),
        *("--experiment", experiment, "--flush-timeout", "3"),
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["answer"] == answer_for(question)
    assert out["run_id"] is None and "record kept in the spool" in out["logging_error"]
    return out["interaction_id"]


@pytest.fixture
def down_server(tmp_path: Path) -> MlflowServer:
    """An MLflow server that is not running yet (nothing listens on its port); stopped at teardown if started."""
    root = tmp_path / "mlflow"
    root.mkdir()
    server = MlflowServer(
        f"sqlite:///{root / 'mlflow.db'}",
        artifacts_args=["--artifacts-destination", str(root / "artifacts")],
        log_path=root / "server.log",
    )
    yield server
    server.stop()


def test_record_for_a_down_server_never_lands_in_the_local_store(
    a2a_agent: A2AAgent, down_server: MlflowServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    experiment = "dest-" + uuid.uuid4().hex[:8]
    first = ask_for_dead_server(home, a2a_agent, down_server.url, experiment)
    assert waiting(home) == {(down_server.url, experiment): 1}

    # A record of the local store left by a client killed before delivery: the unrelated logger's drain takes it,
    # which proves the drain ran over the spool (and over the older segment holding the first record).
    local = Settings(a2a_url=a2a_agent.url, home=home, experiment_name="local-" + uuid.uuid4().hex[:8])
    witness = Interaction(
        question="witness",
        answer="w",
        agent_name="x",
        a2a_url=a2a_agent.url,
        destination=Destination.from_settings(local),
    )
    spool = Spool(local.effective_spool_dir)
    spool.append(witness)
    spool.close()

    # An unrelated ask with no tracking URI (the local store), in the library.
    with KagentMLflowLogger(settings=local) as logger:
        result = logger.send_question("an unrelated question")
        assert dict.__getitem__(result, "answer") == answer_for("an unrelated question")
        assert logger.flush(60)
        deadline = time.monotonic() + 120
        while not runs_of(local_store(home), witness.interaction_id):
            assert time.monotonic() < deadline, "the background drain never delivered the witness"
            time.sleep(0.2)

    assert runs_of(local_store(home), first) == [], "a record meant for another MLflow landed in the local store"
    assert waiting(home) == {(down_server.url, experiment): 1}

    # `replay` (no flags, no tracking URI in the environment) while that server is still down: kept, said so.
    kept = cli(home, "replay", "--attempts", "1")
    assert kept.returncode == 4, kept.stdout + kept.stderr
    assert f"{down_server.url}: delivered 0; not reachable" in kept.stdout, kept.stdout
    assert runs_of(local_store(home), first) == []
    assert waiting(home) == {(down_server.url, experiment): 1}

    # The server comes up: replay delivers the record there, exactly once.
    down_server.start()
    sent = cli(home, "replay")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"{down_server.url}: delivered 1." in sent.stdout and "still waiting 0" in sent.stdout
    again = cli(home, "replay")
    assert again.returncode == 0 and "Nothing to replay" in again.stdout
    (run,) = runs_of(down_server.url, first)
    assert run.info.status == "FINISHED"
    from mlflow.tracking import MlflowClient

    assert MlflowClient(down_server.url).get_experiment(run.info.experiment_id).name == experiment
    assert runs_of(local_store(home), first) == []


def test_replay_after_ask_to_a_dead_port_keeps_the_record_for_it(a2a_agent: A2AAgent, tmp_path: Path) -> None:
    """The finding as written: `ask --tracking-uri http://127.0.0.1:9`, then `replay` with nothing configured."""
    home = tmp_path / "home"
    first = ask_for_dead_server(home, a2a_agent, "http://127.0.0.1:9", "dead-port")
    done = cli(home, "replay", "--attempts", "1")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "http://127.0.0.1:9: delivered 0; not reachable" in done.stdout
    assert "Delivered 0" in done.stdout and "still waiting 1" in done.stdout
    assert not (home / "mlflow.db").exists() or runs_of(local_store(home), first) == []
    assert waiting(home) == {("http://127.0.0.1:9", "dead-port"): 1}


@pytest.mark.parametrize("how", ["flag", "env"])
def test_empty_experiment_is_refused_before_the_agent_is_asked(
    how: str, a2a_bad_server: BadServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    url = a2a_bad_server.url("echo")
    before = len(a2a_bad_server.requests)
    args = ["ask", "Will this be asked?", "--a2a-url", url, "--flush-timeout", "1"]
    if how == "flag":
        done = cli(home, *args, "--experiment", "")
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_ENV)}
        env.update(KAGENT_MLFLOW_HOME=str(home), MLFLOW_EXPERIMENT_NAME=" ")
        done = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: experiment name"), done.stderr
    assert "--experiment NAME" in lines[0]
    assert len(a2a_bad_server.requests) == before, "the agent was asked"
    assert not (home / "spool").exists() or Spool(home / "spool").status().pending == 0


def test_records_without_a_usable_destination_are_only_moved_when_asked(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """A record with an empty experiment (older version) is not guessed into a default experiment, and a record
    naming no MLflow at all waits for an explicit --to."""
    home = tmp_path / "home"
    spool_dir = home / "spool"
    nameless = Interaction(question="q1", answer="a1", agent_name="x", a2a_url="http://x/", experiment_name="e")
    nameless = nameless.to(Destination(tracking_uri=mlflow_server.url, experiment_name="")).model_dump(mode="json")
    unknown = Interaction(question="q2", answer="a2", agent_name="x", a2a_url="http://x/", experiment_name="old")
    legacy = unknown.model_dump(mode="json")
    del legacy["destination"]  # a line as the previous version wrote it
    spool_dir.mkdir(parents=True)
    (spool_dir / f"{0:020d}-1-abcdef.jsonl").write_text(json.dumps(nameless) + "\n" + json.dumps(legacy) + "\n")

    done = cli(home, "replay")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "no experiment name" in done.stdout and "--from unknown --to URI" in done.stdout
    assert runs_of(mlflow_server.url, nameless["interaction_id"]) == []  # not in anyone's default experiment
    assert runs_of(mlflow_server.url, unknown.interaction_id) == []
    assert waiting(home) == {(mlflow_server.url, ""): 1, (None, "old"): 1}

    experiment = "rescued-" + uuid.uuid4().hex[:8]
    named = cli(home, "replay", "--from", mlflow_server.url, "--experiment", experiment)
    assert named.returncode == 0 and f"{mlflow_server.url}: delivered 1." in named.stdout, named.stdout
    assert "1 record(s) for other destinations were left alone" in named.stdout
    moved = cli(home, "replay", "--from", "unknown", "--to", mlflow_server.url)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url)
    (first,) = runs_of(mlflow_server.url, nameless["interaction_id"])
    (second,) = runs_of(mlflow_server.url, unknown.interaction_id)
    assert client.get_experiment(first.info.experiment_id).name == experiment
    assert client.get_experiment(second.info.experiment_id).name == "old"
    assert waiting(home) == {}
