"""Numbers of one target's answers (the run's metrics) and the side-by-side table of several targets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .targets import Answer

# Metric names in the order the comparison table shows them; (label, how to print).
TABLE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("questions", "questions", "{:.0f}"),
    ("answered", "answered", "{:.0f}"),
    ("errors", "errors", "{:.0f}"),
    ("error_rate", "error rate", "{:.1%}"),
    ("latency_p50_ms", "latency p50 (ms)", "{:.0f}"),
    ("latency_p95_ms", "latency p95 (ms)", "{:.0f}"),
    ("latency_p99_ms", "latency p99 (ms)", "{:.0f}"),
    ("ttft_p50_ms", "TTFT p50 (ms)", "{:.0f}"),
    ("tokens_in", "tokens in", "{:.0f}"),
    ("tokens_out", "tokens out", "{:.0f}"),
    ("tokens_total", "tokens total", "{:.0f}"),
    ("tokens_per_answer", "tokens per answer", "{:.1f}"),
    ("tool_calls", "tool calls", "{:.0f}"),
    ("cost_per_answer", "cost per answer", "{:.6f}"),
)


@dataclass(frozen=True)
class Prices:
    """Price per token (any currency); cost per answer = mean over answers of in*input + out*output."""

    input: float = 0.0
    output: float = 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def target_metrics(answers: list[Answer], score_names: list[str], prices: Prices | None = None) -> dict[str, float]:
    ok = [a for a in answers if a.status == "ok"]
    metrics: dict[str, float] = {
        "questions": len(answers),
        "answered": len(ok),
        "errors": len(answers) - len(ok),
        "error_rate": (len(answers) - len(ok)) / len(answers) if answers else 0.0,
    }
    latencies = [a.latency_ms for a in ok]
    if latencies:
        for q in (50, 95, 99):
            metrics[f"latency_p{q}_ms"] = percentile(latencies, q)
        metrics["latency_mean_ms"] = sum(latencies) / len(latencies)
    ttfts = [a.ttft_ms for a in ok if a.ttft_ms is not None]
    if ttfts:
        metrics["ttft_p50_ms"] = percentile(ttfts, 50)
        metrics["ttft_p95_ms"] = percentile(ttfts, 95)
    with_usage = [a for a in ok if a.total_tokens is not None or a.input_tokens is not None]
    if with_usage:
        metrics["tokens_in"] = sum(a.input_tokens or 0 for a in with_usage)
        metrics["tokens_out"] = sum(a.output_tokens or 0 for a in with_usage)
        metrics["tokens_total"] = sum(a.total_tokens or 0 for a in with_usage)
        metrics["tokens_per_answer"] = metrics["tokens_total"] / len(with_usage)
        if prices is not None:
            cost = sum(
                (a.input_tokens or 0) * prices.input + (a.output_tokens or 0) * prices.output for a in with_usage
            )
            metrics["cost_total"] = cost
            metrics["cost_per_answer"] = cost / len(with_usage)
    metrics["tool_calls"] = sum(len(a.tool_calls) for a in ok)
    for name in score_names:
        values = [_as_number(a.scores[name].get("value")) for a in ok if name in a.scores]
        values = [v for v in values if v is not None]
        if values:
            metrics[f"score_{name}"] = sum(values) / len(values)
            metrics[f"score_{name}_count"] = len(values)
    return metrics


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, str) and value.lower() in ("yes", "no"):
        return 1.0 if value.lower() == "yes" else 0.0
    return None


def comparison_rows(metrics: dict[str, dict[str, float]]) -> list[tuple[str, list[str]]]:
    """Rows (label, one cell per target) for every metric at least one target has, scores first."""
    targets = list(metrics)
    score_keys = sorted({k for m in metrics.values() for k in m if k.startswith("score_") and not k.endswith("_count")})
    rows = []
    for key in score_keys:
        rows.append((f"{key[6:]} score", [_cell(metrics[t].get(key), "{:.1%}") for t in targets]))
    for key, label, fmt in TABLE_ROWS:
        if any(key in metrics[t] for t in targets):
            rows.append((label, [_cell(metrics[t].get(key), fmt) for t in targets]))
    return rows


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def results_table(answers: list[Answer], questions: dict[str, Any], score_names: list[str]) -> dict[str, list[Any]]:
    """Columns of the per-question results table (``log_table``)."""
    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "question_id",
            "question",
            "expected",
            "answer",
            "status",
            "error",
            "latency_ms",
            "ttft_ms",
            "tokens_in",
            "tokens_out",
            "tokens_total",
            "tool_calls",
        )
    }
    for name in score_names:
        columns[f"score_{name}"] = []
    for a in sorted(answers, key=lambda a: questions[a.qid].line if a.qid in questions else 0):
        q = questions.get(a.qid)
        columns["question_id"].append(a.qid)
        columns["question"].append(q.question if q else None)
        columns["expected"].append(q.expected if q else None)
        columns["answer"].append(a.answer)
        columns["status"].append(a.status)
        columns["error"].append(a.error)
        columns["latency_ms"].append(round(a.latency_ms, 1))
        columns["ttft_ms"].append(round(a.ttft_ms, 1) if a.ttft_ms is not None else None)
        columns["tokens_in"].append(a.input_tokens)
        columns["tokens_out"].append(a.output_tokens)
        columns["tokens_total"].append(a.total_tokens)
        columns["tool_calls"].append(len(a.tool_calls))
        for name in score_names:
            columns[f"score_{name}"].append(a.scores.get(name, {}).get("value"))
    return columns
