"""Self-check of the MLflow internals we rely on (issue 8, Deliver 5): every one still resolves in the installed
MLflow, and none is used outside ``kagent_mlflow/_mlflow_compat.py``. An MLflow release that moves one fails here,
naming it, instead of failing records at run time."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import mlflow
import pytest

from kagent_mlflow import _mlflow_compat as compat

SRC = Path(compat.__file__).parent
# Private names and raw OpenTelemetry span building: allowed in the compat module only.
PRIVATE_USE = re.compile(
    r"_get_http_response_with_retries|_get_s3_client|_upload_trace_data|_get_server_version|ReadableSpan\(|"
    r"\.store\.(log_spans|update_run_info)|from mlflow\.tracing\.client import|build_otel_context"
)


def check(path: str) -> None:
    """Resolve one internal, or fail with a message naming it and what to do."""
    try:
        compat.resolve(path)
    except (ImportError, AttributeError) as err:
        pytest.fail(
            f"MLflow {mlflow.__version__} no longer has {path} ({type(err).__name__}: {err}); "
            "adapt kagent_mlflow/_mlflow_compat.py to this release or pin mlflow in pyproject.toml"
        )


@pytest.mark.parametrize("path", compat.INTERNALS)
def test_every_mlflow_internal_still_resolves(path: str) -> None:
    check(path)


def test_a_moved_internal_fails_naming_the_symbol() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"no longer has mlflow\.utils\.rest_utils:_renamed_helper"):
        check("mlflow.utils.rest_utils:_renamed_helper")
    with pytest.raises(pytest.fail.Exception, match=r"no longer has mlflow\.no_such_module:X"):
        check("mlflow.no_such_module:X")


def test_the_http_helper_takes_the_parameters_the_fail_fast_wrapper_passes() -> None:
    function = compat.http_request_function()
    assert function is not None
    names = list(inspect.signature(inspect.unwrap(function)).parameters)
    assert tuple(names[: len(compat.HTTP_RETRY_PARAMS)]) == compat.HTTP_RETRY_PARAMS, names


def test_no_module_but_the_compat_one_uses_mlflow_internals() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "_mlflow_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_USE.search(line) and not line.lstrip().startswith(("#", "``")) and "``" not in line
    ]
    assert not offenders, "\n".join(offenders)
