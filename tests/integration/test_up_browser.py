"""The MLflow UI of ``kagent-mlflow up``, checked in a real browser: Debian's headless Chromium driven by playwright.

A question is asked with no flags (the scripted model behind ``--model-url`` calls the agent's glossary tool), then,
as a person would: open the experiment's traces at http://localhost:<port>, search for the question, open its trace,
and see the question, the answer, the token count and the tool's span; then open the run page ``ask`` printed.
Screenshots are kept under the test's tmp dir (the path is printed).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.local_stack import LocalStack
from tests.support.model_server import ModelServerClient

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
# As root on these machines; without the networking flags Chromium keeps trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_TIMEOUT_MS = 180_000  # the UI's first load on a busy 2-core machine
QUESTION = "What is a pod, seen in the browser?"
TOOL_SCRIPT = [
    {"has_tool": "glossary", "after_tool": False, "tool_calls": [{"name": "glossary", "arguments": {"term": "pod"}}]},
    {"after_tool": True, "reply": "A pod is the unit Kubernetes runs. Glossary: {tool_outputs}"},
]


def require_browser() -> None:
    checks = (("chromium", Path(CHROMIUM).exists()), ("playwright", _has_playwright()))
    missing = [what for what, ok in checks if not ok]
    if missing:
        reason = f"{' and '.join(missing)} missing: scripts/bootstrap.sh installs both (apt chromium, dev extra)"
        if os.environ.get("KAGENT_MLFLOW_CI") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def stack(model_server: ModelServerClient, tmp_path: Path) -> Iterator[LocalStack]:
    stack = LocalStack.create(tmp_path)
    stack.up("--model-url", model_server.url)
    yield stack
    stack.down()


def test_the_question_its_answer_usage_and_tool_span_show_in_the_mlflow_ui(
    stack: LocalStack, scripted_model: ModelServerClient, tmp_path: Path
) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    scripted_model.set_script(TOOL_SCRIPT)
    result = stack.ask_json(QUESTION)
    answer = result["answer"]
    assert answer.startswith("A pod is the unit Kubernetes runs.")
    run = MlflowClient(tracking_uri=stack.mlflow_url).get_run(result["run_id"])
    total_tokens = int(run.data.metrics["total_tokens"])

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(f"{stack.mlflow_url}/#/experiments/{run.info.experiment_id}/traces")
            search = page.get_by_placeholder(re.compile("Search traces"))
            search.wait_for()
            dismiss_tips(page)
            search.fill(QUESTION)
            search.press("Enter")
            # The list shows the request as MLflow previews it: the question alone, or JSON-quoted.
            row = page.get_by_text(re.compile(rf'^"?{re.escape(QUESTION)}"?$')).first
            try:
                row.wait_for()
            except Exception:
                page.screenshot(path=shots / "search-failed.png", full_page=True)  # what the page showed instead
                raise
            page.screenshot(path=shots / "1-traces-found-by-question.png")

            row.click()
            page.get_by_text("glossary").first.wait_for()  # the tool's span in the span tree
            page.get_by_text(f"{total_tokens} tokens").first.wait_for()
            page.get_by_text(answer).first.wait_for()
            page.screenshot(path=shots / "2-trace.png")
            body = page.inner_text("body")
            assert QUESTION in body and answer in body
            assert f"{total_tokens} tokens" in body

            page.goto(result["run_url"])
            page.get_by_text(run.info.run_name).first.wait_for()
            page.screenshot(path=shots / "3-run.png")
        finally:
            browser.close()
    assert sorted(p.name for p in shots.iterdir()) == ["1-traces-found-by-question.png", "2-trace.png", "3-run.png"]
    keep = os.environ.get("KAGENT_MLFLOW_ARTIFACTS_DIR")
    if keep:
        shutil.copytree(shots, Path(keep) / "up-browser", dirs_exist_ok=True)


def dismiss_tips(page: object) -> None:
    """MLflow shows a feature tip over the traces table on a first visit; close it as a person would."""
    got_it = page.get_by_role("button", name="Got it")  # type: ignore[attr-defined]
    try:
        got_it.first.click(timeout=5_000)
    except Exception:  # noqa: BLE001 - no tip this time
        pass
