"""The evaluation's plots (matplotlib, no display): latency histogram and CDF, tokens per question, score by target."""

from __future__ import annotations

from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def target_figure(target: str, latencies: list[float], tokens: list[int]) -> Any:
    plt = _pyplot()
    fig, (hist, cdf, tok) = plt.subplots(1, 3, figsize=(13, 3.6))
    if latencies:
        hist.hist(latencies, bins=min(40, max(5, len(latencies) // 5)), color="#4c72b0")
        ordered = sorted(latencies)
        cdf.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], color="#4c72b0")
    hist.set(title=f"{target}: latency", xlabel="ms", ylabel="questions")
    cdf.set(title="latency CDF", xlabel="ms", ylabel="fraction answered", ylim=(0, 1.02))
    cdf.grid(alpha=0.3)
    if tokens:
        tok.bar(range(len(tokens)), tokens, color="#55a868", width=1.0)
    tok.set(title="tokens per question", xlabel="question", ylabel="tokens")
    fig.tight_layout()
    return fig


def comparison_figure(metrics: dict[str, dict[str, float]], latencies: dict[str, list[float]]) -> Any:
    plt = _pyplot()
    targets = list(metrics)
    score_keys = sorted({k for m in metrics.values() for k in m if k.startswith("score_") and not k.endswith("_count")})
    fig, (scores, cdf) = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / max(1, len(targets))
    for index, target in enumerate(targets):
        xs = [i + index * width for i in range(len(score_keys))]
        scores.bar(xs, [metrics[target].get(k, 0.0) for k in score_keys], width=width, label=target)
        ordered = sorted(latencies.get(target, []))
        if ordered:
            cdf.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=target)
    scores.set_xticks([i + width * (len(targets) - 1) / 2 for i in range(len(score_keys))])
    scores.set_xticklabels([k[6:] for k in score_keys])
    scores.set(title="score by target", ylabel="mean score", ylim=(0, 1.05))
    scores.legend(fontsize=8)
    cdf.set(title="latency CDF by target", xlabel="ms", ylabel="fraction answered", ylim=(0, 1.02))
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=8)
    fig.tight_layout()
    return fig
