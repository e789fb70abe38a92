"""Question sets kept in MLflow as GenAI evaluation datasets: ``eval mlflow-dataset:<name or d-id> ...``.

A record's ``inputs`` give the question (key ``question``, ``request``, ``query`` or ``input``, else its only text
value), its ``expectations`` the expected answer (``expected_response``, ``expected_answer`` or ``expected``), its
``dataset_record_id`` the question id. The same checks as for files apply, each naming the record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .dataset import DatasetError, QuestionSet, _questions

PREFIX = "mlflow-dataset:"
_QUESTION_KEYS = ("question", "request", "query", "input")
_EXPECTED_KEYS = ("expected_response", "expected_answer", "expected")


def is_mlflow_dataset(ref: str) -> bool:
    return ref.startswith(PREFIX)


def load_mlflow_dataset(ref: str, tracking_uri: str) -> QuestionSet:
    import mlflow
    from mlflow.genai.datasets import get_dataset

    key = ref[len(PREFIX) :].strip()
    if not key:
        raise DatasetError(f"{ref!r}: name the dataset, e.g. mlflow-dataset:my-questions or mlflow-dataset:d-1234")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        dataset = get_dataset(dataset_id=key) if key.startswith("d-") else get_dataset(name=key)
        records = dataset.to_df().to_dict("records")
    except Exception as err:  # noqa: BLE001 - not found, server down: one line
        raise DatasetError(f"MLflow evaluation dataset {key!r}: {' '.join(str(err).split())[:200]}") from None
    rows = []
    for number, record in enumerate(records, start=1):
        inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
        expectations = record.get("expectations") if isinstance(record.get("expectations"), dict) else {}
        question = next((inputs[k] for k in _QUESTION_KEYS if k in inputs), None)
        texts = [v for v in inputs.values() if isinstance(v, str)]
        if question is None and len(texts) == 1:
            question = texts[0]
        row: dict[str, Any] = {"question": question, "id": record.get("dataset_record_id") or None}
        expected = next((expectations[k] for k in _EXPECTED_KEYS if k in expectations), None)
        if expected is not None:
            row["expected"] = expected
        rows.append((number, row))
    shown = f"{PREFIX}{key} record"
    questions = _questions(shown, rows)
    if not questions:
        raise DatasetError(f"MLflow evaluation dataset {key!r} has no records")
    digest = (
        getattr(dataset, "digest", None)
        or hashlib.sha256(
            json.dumps([[q.id, q.question, q.expected] for q in questions]).encode("utf-8", "surrogatepass")
        ).hexdigest()
    )
    return QuestionSet(ref, getattr(dataset, "name", None) or key, str(digest), questions)


def save_jsonl(qset: QuestionSet, path: Path) -> Path:
    """The set as a ``.jsonl`` file (for the recorder process, which reads questions from a file)."""
    lines = [
        json.dumps({"id": q.id, "question": q.question, "expected": q.expected, "tags": q.tags}) for q in qset.questions
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    return path
