"""Evaluate and compare agents on question sets, recorded in MLflow the GenAI way (``kagent-mlflow eval``/``compare``).

Layout: :mod:`.dataset` (question sets, shards), :mod:`.targets` (A2A agents and Agent Servers), :mod:`.runner`
(asking with concurrency, timeouts, retries, resume), :mod:`.journal` (what was asked and recorded, on disk),
:mod:`.scoring` (MLflow scorers: deterministic and an LLM judge), :mod:`.traces` + :mod:`.recording` (one trace per
question, many per request, scores as assessments), :mod:`.runs`, :mod:`.summary`, :mod:`.plots` (runs, metrics,
tables, plots), :mod:`.compare` (the comparison of existing runs).
"""
