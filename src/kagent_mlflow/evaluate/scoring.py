"""Scoring answers against expected ones with MLflow scorers (``mlflow.genai.scorers.scorer``).

Deterministic scorers (no model): ``exact``, ``contains``, ``regex`` (the expected answer is a pattern) and
``numeric[:TOL]`` (a number in the answer within a relative tolerance of the expected one, default 1e-6). ``judge``
asks an LLM on any OpenAI-compatible endpoint (Llama Stack's ``/v1``) whether the answer is correct; it is a scorer
too, so the same objects work in ``mlflow.genai.evaluate``. A scorer's result is an MLflow ``Feedback``: recorded as
an assessment on the question's trace.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

DETERMINISTIC = ("exact", "contains", "regex", "numeric")
JUDGE_NAME = "judge"
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")
JUDGE_INSTRUCTIONS = (
    "You are a strict grader. Decide whether the ANSWER correctly answers the QUESTION"
    " (and agrees with the EXPECTED answer when one is given). Reply with 'yes' or 'no' as the first word,"
    " then one short sentence saying why."
)


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    tolerance: float = 1e-6

    @property
    def needs_expected(self) -> bool:
        return self.name != JUDGE_NAME


def parse_scorers(names: list[str], *, judge: JudgeConfig | None) -> list[ScorerSpec]:
    specs = []
    for text in names:
        name, _, arg = text.strip().partition(":")
        name = name.lower()
        if name not in (*DETERMINISTIC, JUDGE_NAME):
            raise ConfigError(f"--score {text!r}: unknown scorer; use exact, contains, regex, numeric[:TOL] or judge")
        tolerance = 1e-6
        if arg:
            try:
                tolerance = float(arg)
            except ValueError:
                tolerance = -1.0
            if name != "numeric" or not math.isfinite(tolerance) or tolerance < 0:
                raise ConfigError(f"--score {text!r}: only numeric takes an argument, a tolerance >= 0 (numeric:0.01)")
        if name == JUDGE_NAME and judge is None:
            raise ConfigError("--score judge needs --judge-model (and --judge-url or LLAMA_STACK_BASE_URL)")
        if all(s.name != name for s in specs):
            specs.append(ScorerSpec(name, tolerance))
    if judge is not None and all(s.name != JUDGE_NAME for s in specs):
        specs.append(ScorerSpec(JUDGE_NAME))
    return specs


def normalize(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .!?;:")


def _numbers(text: str) -> list[float]:
    values = []
    for match in _NUMBER.finditer(text):
        token = match.group().replace(",", "")
        if token and any(c.isdigit() for c in token):
            try:
                values.append(float(token))
            except ValueError:
                continue
    return values


def score_exact(answer: str, expected: str) -> tuple[bool, str]:
    ok = normalize(answer) == normalize(expected)
    return ok, "the answer equals the expected one" if ok else "the answer differs from the expected one"


def score_contains(answer: str, expected: str) -> tuple[bool, str]:
    ok = normalize(expected) in normalize(answer)
    return ok, "the answer contains the expected one" if ok else "the expected answer is not in the answer"


def score_regex(answer: str, expected: str) -> tuple[bool, str]:
    try:
        ok = re.search(expected, answer, re.IGNORECASE | re.DOTALL) is not None
    except re.error as err:
        raise ValueError(f"expected answer is not a valid regular expression ({err})") from None
    return ok, "the answer matches the pattern" if ok else "the answer does not match the pattern"


class NotApplicable(Exception):
    """The scorer does not apply to this row (``numeric`` on an expected answer without a number): no score."""


def score_numeric(answer: str, expected: str, tolerance: float) -> tuple[bool, str]:
    targets = _numbers(expected)
    if not targets:
        raise NotApplicable(f"expected answer {expected[:50]!r} holds no number")
    want = targets[0]
    found = _numbers(answer)
    if not found:
        return False, "the answer holds no number"
    best = min(found, key=lambda v: abs(v - want))
    ok = abs(best - want) <= tolerance * max(1.0, abs(want))
    return ok, f"closest number {best:g} vs expected {want:g} (relative tolerance {tolerance:g})"


def judge_verdict(reply: str) -> tuple[bool, str]:
    """``yes ...`` / ``no ...`` (any case, leading punctuation ignored)."""
    words = re.findall(r"[A-Za-z]+", reply[:40])
    first = words[0].lower() if words else ""
    if first not in ("yes", "no", "correct", "incorrect"):
        raise ValueError(f"the judge's reply does not start with yes or no: {' '.join(reply.split())[:120]!r}")
    return first in ("yes", "correct"), " ".join(reply.split())[:500]


class Scoring:
    """The MLflow scorers of one evaluation; ``score`` returns ``{name: {"value", "rationale", "error"}}``."""

    def __init__(self, specs: list[ScorerSpec], judge: JudgeConfig | None = None) -> None:
        self.specs = specs
        self.judge = judge
        self._judge_client: Any = None
        self.scorers = {spec.name: self._make(spec) for spec in specs}

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def deterministic(self) -> list[str]:
        return [s.name for s in self.specs if s.name != JUDGE_NAME]

    def _make(self, spec: ScorerSpec) -> Any:
        from mlflow.genai.scorers import scorer

        if spec.name == JUDGE_NAME:
            return scorer(name=JUDGE_NAME, timeout=0)(self._judge)  # the client has its own timeout
        tolerance = spec.tolerance
        function = {
            "exact": score_exact,
            "contains": score_contains,
            "regex": score_regex,
            "numeric": lambda a, e: score_numeric(a, e, tolerance),
        }[spec.name]

        def check(outputs: Any, expectations: dict[str, Any]) -> Any:
            from mlflow.entities import Feedback

            value, rationale = function(str(outputs), str(expectations["expected_response"]))
            return Feedback(name=spec.name, value=value, rationale=rationale)

        return scorer(name=spec.name, timeout=0)(check)  # no watchdog thread per row

    def _judge(self, inputs: Any, outputs: Any, expectations: dict[str, Any] | None = None) -> Any:
        from mlflow.entities import Feedback

        if self._judge_client is None:
            from openai import OpenAI

            assert self.judge is not None
            self._judge_client = OpenAI(
                base_url=self.judge.base_url, api_key=self.judge.api_key or "unused", timeout=self.judge.timeout
            )
        expected = (expectations or {}).get("expected_response")
        prompt = f"QUESTION: {inputs['question']}\n"
        if expected is not None:
            prompt += f"EXPECTED: {expected}\n"
        prompt += f"ANSWER: {outputs}\nIs the answer correct? Reply yes or no, then why."
        assert self.judge is not None
        completion = self._judge_client.chat.completions.create(
            model=self.judge.model,
            messages=[{"role": "system", "content": JUDGE_INSTRUCTIONS}, {"role": "user", "content": prompt}],
            temperature=0,
        )
        value, rationale = judge_verdict(completion.choices[0].message.content or "")
        return Feedback(name=JUDGE_NAME, value=value, rationale=rationale)

    def score(self, question: str, answer: str | None, expected: str | None, names: list[str]) -> dict[str, Any]:
        """Run the named scorers; a scorer that cannot score this row gives an error, never an exception."""
        results: dict[str, Any] = {}
        for name in names:
            spec = next(s for s in self.specs if s.name == name)
            if answer is None:
                continue  # no answer: the error is the trace's, not a score
            if spec.needs_expected and expected is None:
                continue
            try:
                feedback = self.scorers[name].run(
                    inputs={"question": question},
                    outputs=answer,
                    expectations={"expected_response": expected} if expected is not None else None,
                )
                results[name] = {"value": feedback.value, "rationale": feedback.rationale}
            except NotApplicable:
                continue
            except Exception as err:  # noqa: BLE001 - one row's scoring problem is recorded, never fatal
                message = " ".join(str(err).split())[:300] or type(err).__name__
                results[name] = {"value": None, "error": message}
        return results
