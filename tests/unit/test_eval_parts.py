"""Unit tests of the evaluation's pure parts: question sets, shards, scorers, metrics, targets, the journal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kagent_mlflow.errors import ConfigError
from kagent_mlflow.evaluate.dataset import DatasetError, load_questions, parse_shard, select
from kagent_mlflow.evaluate.journal import Journal
from kagent_mlflow.evaluate.scoring import (
    NotApplicable,
    Scoring,
    judge_verdict,
    parse_scorers,
    score_contains,
    score_exact,
    score_numeric,
    score_regex,
)
from kagent_mlflow.evaluate.summary import Prices, comparison_rows, percentile, target_metrics
from kagent_mlflow.evaluate.targets import Answer, parse_target, unique_targets


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_and_csv_sets_read_the_same(tmp_path: Path) -> None:
    rows = [{"id": "a", "question": "What is a Pod?", "expected": "pod", "tags": {"topic": "k8s"}}, {"question": "Hi"}]
    jsonl = load_questions(write(tmp_path / "s.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n"))
    csv = load_questions(
        write(tmp_path / "s.csv", 'id,question,expected,tags\na,"What is a Pod?",pod,topic=k8s\n,Hi,,\n')
    )
    assert [(q.id, q.question, q.expected, q.tags) for q in jsonl.questions] == [
        (q.id, q.question, q.expected, q.tags) for q in csv.questions
    ]
    assert jsonl.questions[1].id.startswith("q-") and len(jsonl.digest) == 64


def test_default_ids_survive_reordering_and_repeats_get_suffixes(tmp_path: Path) -> None:
    one = load_questions(write(tmp_path / "a.jsonl", '{"question": "x"}\n{"question": "y"}\n{"question": "x"}\n'))
    two = load_questions(write(tmp_path / "b.jsonl", '{"question": "y"}\n{"question": "x"}\n'))
    ids = [q.id for q in one.questions]
    assert ids[2] == ids[0] + "-2"
    assert {q.question: q.id for q in two.questions} == {"x": ids[0], "y": ids[1]}


def test_shards_split_the_set_deterministically(tmp_path: Path) -> None:
    qset = load_questions(write(tmp_path / "s.jsonl", "".join(f'{{"question": "q{i}"}}\n' for i in range(100))))
    shards = [select(qset.questions, shard=(i, 4)) for i in range(4)]
    ids = [q.id for shard in shards for q in shard]
    assert sorted(ids) == sorted(q.id for q in qset.questions)  # every question in exactly one shard
    assert all(shards)
    assert select(list(reversed(qset.questions)), shard=(1, 4)) == list(reversed(shards[1]))
    assert len(select(qset.questions, shard=(0, 4), limit=3)) == 3


@pytest.mark.parametrize("text", ["4/4", "-1/2", "a/b", "3", "1/0"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="i/N"):
        parse_shard(text)


def test_bad_rows_name_their_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="line 2: .*tags"):
        load_questions(write(tmp_path / "s.jsonl", '{"question": "a"}\n{"question": "b", "tags": 5}\n'))
    with pytest.raises(DatasetError, match='line 1: "expected" is a boolean'):
        load_questions(write(tmp_path / "t.jsonl", '{"question": "a", "expected": true}\n'))
    with pytest.raises(DatasetError, match="line 2: 3 cells for 2 columns"):
        load_questions(write(tmp_path / "u.csv", "id,question\n1,a,b\n"))


def test_deterministic_scorers() -> None:
    assert score_exact("  Paris. ", "paris")[0] and not score_exact("Paris, France", "Paris")[0]
    assert score_contains("It is Paris, France.", "paris")[0]
    assert score_regex("replicas: 3", r"replicas:\s*3")[0]
    with pytest.raises(ValueError, match="regular expression"):
        score_regex("x", "(")
    assert score_numeric("about 3,141.6 units", "3141.59", 1e-3)[0]
    assert not score_numeric("42", "41", 0.01)[0]
    with pytest.raises(NotApplicable, match="no number"):
        score_numeric("1", "none", 0.1)
    scoring = Scoring(parse_scorers(["numeric", "regex"], judge=None))
    scores = scoring.score("q", "about 5", "five", scoring.names)
    assert "numeric" not in scores and scores["regex"]["value"] is False  # numeric does not apply: no score
    assert "error" in scoring.score("q", "x", "(", ["regex"])["regex"]


def test_judge_verdicts() -> None:
    assert judge_verdict("Yes - it matches")[0] is True
    assert judge_verdict("**No**, wrong city")[0] is False
    with pytest.raises(ValueError, match="yes or no"):
        judge_verdict("Scripted answer to: ...")


def test_scorer_flags() -> None:
    assert [s.name for s in parse_scorers(["exact", "numeric:0.5", "exact"], judge=None)] == ["exact", "numeric"]
    with pytest.raises(ConfigError, match="unknown scorer"):
        parse_scorers(["fuzzy"], judge=None)
    with pytest.raises(ConfigError, match="judge-model"):
        parse_scorers(["judge"], judge=None)
    with pytest.raises(ConfigError, match="tolerance"):
        parse_scorers(["numeric:-1"], judge=None)


def answer(qid: str, latency: float, ok: bool = True, **kw: object) -> Answer:
    return Answer(
        qid=qid, target="t", status="ok" if ok else "error", answer="a" if ok else None, latency_ms=latency, **kw
    )


def test_metrics_and_comparison() -> None:
    answers = [answer(str(i), float(i), input_tokens=10, output_tokens=5, total_tokens=15) for i in range(1, 101)]
    answers[0].scores = {"exact": {"value": True}}
    answers[1].scores = {"exact": {"value": False}}
    answers.append(answer("x", 0, ok=False))
    metrics = target_metrics(answers, ["exact"], Prices(input=0.01, output=0.02))
    assert metrics["answered"] == 100 and metrics["errors"] == 1
    assert metrics["latency_p50_ms"] == 50 and metrics["latency_p99_ms"] == 99
    assert metrics["score_exact"] == 0.5 and metrics["cost_per_answer"] == pytest.approx(0.2)
    rows = dict(comparison_rows({"a": metrics, "b": {"questions": 3}}))
    assert rows["exact score"] == ["50.0%", "-"] and rows["questions"] == ["101", "3"]
    assert percentile([5.0], 99) == 5.0


def test_targets() -> None:
    served = parse_target("http://h:8000/invocations")
    assert served.kind == "agent_server" and served.name == "agent-server-8000"
    named = parse_target("mine=http://user:pw@h/api/a2a/kagent/rh/")
    assert named.kind == "a2a" and named.name == "mine" and "pw" not in named.shown_url
    assert [t.name for t in unique_targets([named, named])] == ["mine", "mine-2"]
    with pytest.raises(ConfigError):
        parse_target("ftp://h/")
    with pytest.raises(ConfigError, match="name"):
        parse_target("bad name=http://h/")


def test_journal_survives_torn_lines_and_reads_incrementally(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, "key", {"dataset": {}})
    journal.add_answer(answer("q1", 1.0))
    first, offset = journal.read_answers(0)
    assert list(first) == [("t", "q1")]
    with open(journal.directory / "answers.jsonl", "a") as handle:
        handle.write('{"qid": "q2", "tar')  # killed in mid-write
    assert journal.read_answers(offset) == ({}, offset)
    journal.close()
    again = Journal.find(tmp_path, "key")
    assert again is not None and again.eval_id == journal.eval_id
    again.add_answer(answer("q3", 3.0))
    assert set(again.answers()) == {("t", "q1"), ("t", "q3")}
    with pytest.raises(ConfigError, match="another process"):
        Journal.find(tmp_path, "key")
    again.add_recorded("t", [("t", "q1")])
    again.add_recorded("a", [("t", "q3")])
    assert again.recorded() == ({("t", "q1"), ("t", "q3")}, {("t", "q3")})
    again.close()
