"""``--help`` shows flags as flags (issue 8, Why #8: typer's rich help labelled ``--json``, ``--help`` ``<bool>``)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kagent_mlflow.cli import app


@pytest.mark.parametrize("command", [[], ["ask"], ["status"], ["replay"], ["ui"], ["serve"]])
def test_help_has_no_bool_placeholders(command: list[str]) -> None:
    done = CliRunner().invoke(app, [*command, "--help"])
    assert done.exit_code == 0, done.output
    assert "--help" in done.output
    assert "<bool>" not in done.output


def test_ask_help_shows_json_as_a_plain_flag() -> None:
    output = CliRunner().invoke(app, ["ask", "--help"]).output
    line = next(line for line in output.splitlines() if "--json" in line)
    assert line.split()[:2] == ["--json", "Print"]
