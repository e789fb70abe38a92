"""A record carries its destination: stored without credentials, read back from the spool (old lines too), grouped
by `status`, delivered only through a sink for that server, re-targeted only when asked."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kagent_mlflow.cli import app
from kagent_mlflow.config import Settings
from kagent_mlflow.delivery import Spool, replay
from kagent_mlflow.delivery.routing import Retarget
from kagent_mlflow.errors import AgentError, ConfigError
from kagent_mlflow.logger import KagentMLflowLogger
from kagent_mlflow.records import Destination, Interaction

from .test_delivery_recorder import FakeSink

runner = CliRunner()
DEV = Destination(tracking_uri="http://dev-mlflow:5000", experiment_name="dev-exp")
PROD = Destination(tracking_uri="http://prod-mlflow:5000", experiment_name="prod-exp", s3_endpoint_url="http://s3:9000")


def record(destination: Destination | None, i: int = 0, experiment: str = "legacy") -> Interaction:
    fields = {"destination": destination} if destination else {"experiment_name": experiment}
    return Interaction(question=f"q{i}", answer="a", agent_name="agent", a2a_url="http://x/", **fields)


def spool_records(directory: Path, records: list[Interaction]) -> None:
    spool = Spool(directory)
    for r in records:
        spool.append(r)
    spool.close()


# ---------------------------------------------------------------------------------------------- the model


def test_destination_from_settings_strips_credentials_and_resolves_the_local_store(tmp_path: Path) -> None:
    server = Settings(
        tracking_uri="https://alice:PW123@mlflow.example.com/",
        s3_endpoint_url="http://key:SECRET9@minio:9000/",
        aws_access_key_id="AKIAKEY",
        aws_secret_access_key="SECRETKEY",
        experiment_name="exp",
        home=tmp_path,
    )
    dest = Destination.from_settings(server)
    assert dest == Destination(
        tracking_uri="https://mlflow.example.com", experiment_name="exp", s3_endpoint_url="http://minio:9000"
    )
    assert not any(secret in dest.model_dump_json() for secret in ("PW123", "SECRET9", "AKIAKEY", "SECRETKEY"))

    local = Destination.from_settings(Settings(home=Path("relative-home"), experiment_name="exp"))
    assert local.tracking_uri == f"sqlite:///{Path('relative-home').absolute() / 'mlflow.db'}"
    assert local.artifact_location == (Path("relative-home").absolute() / "artifacts").as_uri()


def test_interaction_takes_its_experiment_from_the_destination_and_refuses_two() -> None:
    assert record(DEV).experiment_name == "dev-exp"
    with pytest.raises(ValueError, match="differs"):
        Interaction(question="q", agent_name="a", a2a_url="http://x/", experiment_name="other", destination=DEV)
    moved = record(DEV).to(PROD)
    assert (moved.destination, moved.experiment_name) == (PROD, "prod-exp")


def test_logger_stamps_each_record_with_its_settings_destination(tmp_path: Path) -> None:
    logger = KagentMLflowLogger(
        mlflow_tracking_uri="http://bob:PASS@127.0.0.1:9",
        experiment_name="mine",
        a2a_url="http://127.0.0.1:1/",
        settings=None,
    )
    with pytest.raises(AgentError) as failed:  # nothing listens on port 1: the failed question is recorded too
        logger.send_question("q")
    logger.close(timeout=0)
    made = failed.value.result.interaction
    assert made.destination == Destination(tracking_uri="http://127.0.0.1:9", experiment_name="mine")


@pytest.mark.parametrize("name", ["", "   ", "\t", "x" * 501, "bad\x00name", "new\nline"])
def test_bad_experiment_names_are_refused_by_settings_and_the_library(name: str) -> None:
    with pytest.raises(ConfigError, match="experiment name") as err:
        Settings(experiment_name=name)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="experiment name"):
        KagentMLflowLogger(experiment_name=name, a2a_url="http://127.0.0.1:1/")


# ---------------------------------------------------------------------------------------------- the spool


def test_destination_round_trips_through_the_spool_and_old_lines_still_read(tmp_path: Path) -> None:
    records = [record(DEV, 0), record(PROD, 1)]
    spool_records(tmp_path, records)
    # A line as the previous version wrote it: no "destination" key at all.
    old = record(None, 2, experiment="from-before").model_dump(mode="json")
    del old["destination"]
    (segment,) = tmp_path.glob("*.jsonl")
    with open(segment, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(old) + "\n")

    read = []
    for claimed in Spool(tmp_path).claim():
        read.extend(claimed.records())
        claimed.release(complete=False)
    assert read[:2] == records
    assert read[2].destination is None and read[2].experiment_name == "from-before"

    waiting = {(w.destination, w.experiment_name): w.pending for w in Spool(tmp_path).status().waiting}
    assert waiting == {(DEV, "dev-exp"): 1, (PROD, "prod-exp"): 1, (None, "from-before"): 1}


def test_a_malformed_destination_is_a_corrupt_line_not_a_crash(tmp_path: Path) -> None:
    spool_records(tmp_path, [record(DEV)])
    bad = record(DEV, 1).model_dump(mode="json")
    bad["destination"] = {"tracking_uri": ["not", "a", "string"]}
    (segment,) = tmp_path.glob("*.jsonl")
    with open(segment, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(bad) + "\n")
    status = Spool(tmp_path).status()
    assert (status.pending, status.corrupt_lines) == (1, 1)


# ---------------------------------------------------------------------------------------------- delivery


def test_replay_delivers_only_the_records_meant_for_the_sinks_server(tmp_path: Path) -> None:
    dev_records = [record(DEV, i) for i in range(3)]
    other_experiment = record(DEV.model_copy(update={"experiment_name": "dev-2"}), 3)
    others = [record(PROD, 4), record(None, 5)]
    spool_records(tmp_path, [*dev_records, other_experiment, *others])

    dev = FakeSink(DEV)
    report = replay(Spool(tmp_path), dev)
    assert (report.delivered, report.elsewhere) == (4, 2)
    assert set(dev.runs) == {r.interaction_id for r in [*dev_records, other_experiment]}
    left = Spool(tmp_path).status()
    assert {(w.destination, w.experiment_name): w.pending for w in left.waiting} == {
        (PROD, "prod-exp"): 1,
        (None, "legacy"): 1,
    }
    # Nothing meant for DEV is left, so DEV delivers nothing more; the others are untouched.
    assert replay(Spool(tmp_path), dev).delivered == 0


def test_explicit_retarget_moves_only_the_selected_records(tmp_path: Path) -> None:
    spool_records(tmp_path, [record(DEV, 0), record(None, 1)])
    target = Destination(tracking_uri="http://new:5000", experiment_name="ignored")
    sink = FakeSink(target)
    moves = Retarget(to=target, source="unknown")
    report = replay(Spool(tmp_path), sink, route=moves.route(target.server))
    assert report.delivered == 1 and report.elsewhere == 1
    (moved,) = sink.runs
    assert moved != record(DEV, 0).interaction_id
    assert [w.destination for w in Spool(tmp_path).status().waiting] == [DEV]


def test_recorder_background_drain_leaves_other_destinations_alone(tmp_path: Path) -> None:
    from kagent_mlflow.delivery import Recorder

    from .test_delivery_recorder import wait_for

    spool_records(tmp_path, [record(PROD, 0), record(None, 1), record(DEV, 2)])
    sink = FakeSink(DEV)
    recorder = Recorder(lambda: sink, Spool(tmp_path), retry_interval=0.1, retry_gap=0.05)
    try:
        assert wait_for(lambda: sink.complete() == 1)  # the DEV record: proves the drain ran
    finally:
        recorder.close(timeout=5)
    assert len(sink.runs) == 1
    assert Spool(tmp_path).status().pending == 2


# ---------------------------------------------------------------------------------------------- the commands


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "spool"
    monkeypatch.setenv("KAGENT_MLFLOW_SPOOL_DIR", str(directory))
    monkeypatch.setenv("KAGENT_MLFLOW_HOME", str(tmp_path / "home"))
    for name in ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    return directory


@pytest.fixture
def sinks(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeSink]:
    """One fake sink per destination server the CLI asks for (keyed by tracking URI)."""
    made: dict[str, FakeSink] = {}

    class Sink(FakeSink):
        def __init__(self, settings: Settings, destination: Destination) -> None:
            super().__init__(destination)
            self.settings = settings
            made[destination.tracking_uri] = self

        def missing_credentials(self) -> str | None:
            if self.destination.s3_endpoint_url and not self.settings.aws_access_key_id:
                return "S3 keys missing"
            return None

    module = types.ModuleType("kagent_mlflow.sinks.mlflow")
    module.MlflowSink = Sink  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kagent_mlflow.sinks.mlflow", module)
    return made


def test_status_lists_each_destination(spool_dir: Path) -> None:
    spool_records(spool_dir, [record(DEV, 0), record(DEV, 1), record(PROD, 2), record(None, 3)])
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("2  http://dev-mlflow:5000  experiment 'dev-exp'" in line for line in lines), result.output
    assert any("http://prod-mlflow:5000 (artifacts via http://s3:9000)" in line for line in lines)
    assert any("MLflow unknown" in line and "'legacy'" in line for line in lines)
    data = json.loads(runner.invoke(app, ["status", "--json"]).output)
    counts = {(d["tracking_uri"], d["experiment"]): d["pending"] for d in data["destinations"]}
    assert counts == {
        ("http://dev-mlflow:5000", "dev-exp"): 2,
        ("http://prod-mlflow:5000", "prod-exp"): 1,
        (None, "legacy"): 1,
    }
    assert all(d["oldest_ms"] for d in data["destinations"])


def test_replay_sends_each_destination_its_own_and_says_what_it_kept(
    spool_dir: Path, sinks: dict[str, FakeSink]
) -> None:
    spool_records(spool_dir, [record(DEV, 0), record(PROD, 1), record(None, 2)])
    result = runner.invoke(app, ["replay"])
    assert result.exit_code == 4, result.output
    assert len(sinks["http://dev-mlflow:5000"].runs) == 1
    assert sinks["http://prod-mlflow:5000"].runs == {}
    assert "S3 keys missing; 1 record(s) kept" in result.output
    assert "1 record(s) do not name their MLflow" in result.output and "--from unknown --to URI" in result.output
    assert "Traceback" not in result.output
    assert Spool(spool_dir).status().pending == 2

    keyed = runner.invoke(app, ["replay", "--aws-access-key-id", "K", "--aws-secret-access-key", "S"])
    assert keyed.exit_code == 4  # the old record still waits for an explicit --to
    assert len(sinks["http://prod-mlflow:5000"].runs) == 1

    moved = runner.invoke(app, ["replay", "--from", "unknown", "--to", "http://rescue:5000", "--experiment", "kept"])
    assert moved.exit_code == 0, moved.output
    assert len(sinks["http://rescue:5000"].runs) == 1
    assert Spool(spool_dir).status().pending == 0


def test_replay_to_is_explicit_for_every_record_it_selects(spool_dir: Path, sinks: dict[str, FakeSink]) -> None:
    spool_records(spool_dir, [record(DEV, 0), record(DEV, 1)])
    result = runner.invoke(app, ["replay", "--to", "http://elsewhere:5000/"])
    assert result.exit_code == 0, result.output
    assert len(sinks["http://elsewhere:5000"].runs) == 2 and "http://dev-mlflow:5000" not in sinks


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "ftp://x"], "unsupported scheme"),
        (["--experiment", ""], "experiment name"),
        (["--s3-endpoint-url", "minio:9000"], "S3 endpoint URL"),
    ],
)
def test_replay_refuses_bad_flags_in_one_line(spool_dir: Path, args: list[str], message: str) -> None:
    spool_records(spool_dir, [record(DEV)])
    result = runner.invoke(app, ["replay", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert Spool(spool_dir).status().pending == 1


def test_every_replay_flag_the_docs_name_exists() -> None:
    """Docs once listed replay flags that did not exist (issue 8, Why #7); every one named now is real."""
    import re

    root = Path(__file__).resolve().parents[2]
    text = "\n".join(p.read_text(encoding="utf-8") for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    named = set()
    for match in re.finditer(r"replay((?: +--[\w-]+(?: +[^\s`-][^\s`]*)?)+)", text):
        named.update(re.findall(r"--[\w-]+", match.group(1)))
    assert {"--to", "--from", "--experiment", "--s3-endpoint-url"} <= named
    help_text = runner.invoke(app, ["replay", "--help"]).output
    missing = {flag for flag in named if flag not in help_text}
    assert not missing, f"docs name replay flags that do not exist: {missing}"


def test_replay_to_with_credentials_connects_with_them_and_never_shows_them(
    spool_dir: Path, sinks: dict[str, FakeSink]
) -> None:
    spool_records(spool_dir, [record(DEV)])
    result = runner.invoke(app, ["replay", "--to", "http://ops:TOPSECRET1@rescue:5000/?token=TOPSECRET2"])
    assert result.exit_code == 0, result.output
    assert "TOPSECRET" not in result.output
    (sink,) = sinks.values()
    assert "TOPSECRET" not in sink.destination.model_dump_json()
    assert sink.settings.tracking_uri.startswith("http://ops:TOPSECRET1@")  # what the real sink connects with


def test_a_hand_edited_destination_loses_its_credentials_when_read(tmp_path: Path) -> None:
    line = record(DEV).model_dump(mode="json")
    line["destination"]["tracking_uri"] = "http://eve:STOLEN@dev-mlflow:5000/"
    tmp_path.joinpath("00000000000000000001-1-aaaaaa.jsonl").write_text(json.dumps(line) + "\n")
    (waiting,) = Spool(tmp_path).status().waiting
    assert waiting.destination is not None and waiting.destination.tracking_uri == "http://dev-mlflow:5000"


def test_absurdly_deep_json_in_a_spool_line_is_a_corrupt_line_for_status(tmp_path: Path) -> None:
    spool_records(tmp_path, [record(DEV)])
    (segment,) = tmp_path.glob("*.jsonl")
    deep = '{"interaction_id": "x", "experiment_name": "e", "destination": ' + "[" * 200_000 + "]" * 200_000 + "}"
    with open(segment, "a", encoding="utf-8") as fh:
        fh.write(deep + "\n")
    status = Spool(tmp_path).status()
    assert (status.pending, status.corrupt_lines) == (1, 1)


def test_sink_connects_with_configured_credentials_but_names_its_server_without_them() -> None:
    from kagent_mlflow.sinks.mlflow import MlflowSink

    settings = Settings(tracking_uri="http://ops:PWLEAK@mlflow.example:5000/", experiment_name="e")
    own = MlflowSink(settings)
    assert own._connect_uri == "http://ops:PWLEAK@mlflow.example:5000/"  # what MlflowClient talks to
    assert own.tracking_uri == own.destination.tracking_uri == "http://mlflow.example:5000"
    assert "PWLEAK" not in own.run_url("1", "abc")
    # A sink for another destination never borrows the configured server's credentials.
    other = MlflowSink(settings, destination=DEV)
    assert other._connect_uri == "http://dev-mlflow:5000"


def test_status_counts_agent_server_traces_spilled_to_disk(
    spool_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kagent_mlflow.serve.trace_spill import Record, SpillWriter

    spill = tmp_path / "trace-spill"
    monkeypatch.setenv("KAGENT_MLFLOW_TRACE_SPILL_DIR", str(spill))
    empty = json.loads(runner.invoke(app, ["status", "--json"]).output)["agent_server_traces"]
    assert (empty["pending"], empty["path"]) == (0, str(spill))

    writer = SpillWriter(spill, "http://dev-mlflow:5000")
    writer.append([Record("1", b"x" * 10), Record("1", b"y" * 20), Record("2", b"z")])
    writer.close()
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert f"Agent Server traces waiting: 3 (0.0 MB) in {spill}" in result.output
    traces = json.loads(runner.invoke(app, ["status", "--json"]).output)["agent_server_traces"]
    assert (traces["pending"], traces["bytes"]) == (3, 31)
