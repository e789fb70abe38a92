"""The W3C trace context of one interaction, decided before the question is sent (no MLflow import).

The MLflow sink writes the interaction's trace later, off the live path; the A2A request must already name that
trace so an agent runtime with OpenTelemetry on can put its own spans inside it. Both sides therefore derive the ids
from the ``interaction_id`` alone: trace id = the MLflow trace id's 32 hex digits (``tr-<hex>``), parent span id =
the AGENT root span the sink writes. Replaying a record derives the same ids again.
"""

from __future__ import annotations

import hashlib
import re

TRACESTATE_KEY = "kagent-mlflow"  # our vendor key in ``tracestate`` (W3C: lowercase, digits, ``_-*/``)
_TRACESTATE_VALUE = re.compile(r"^[0-9A-Za-z_.:-]{1,128}$")  # printable, no ``,`` or ``=``


def hex_id(interaction_id: str, salt: str, digits: int) -> str:
    """``digits`` hex digits derived from the interaction id; never all zero (OpenTelemetry forbids that)."""
    value = hashlib.sha256(f"kagent-mlflow:{salt}:{interaction_id}".encode()).hexdigest()[:digits]
    return value if int(value, 16) else "1".rjust(digits, "0")


def trace_hex(interaction_id: str) -> str:
    """The OpenTelemetry trace id (32 hex digits) of the interaction's trace."""
    return hex_id(interaction_id, "trace", 32)


def trace_id_for(interaction_id: str) -> str:
    """The MLflow trace id (``tr-`` + the OpenTelemetry trace id) of the interaction's trace."""
    return "tr-" + trace_hex(interaction_id)


def root_span_hex(interaction_id: str) -> str:
    """The span id (16 hex digits) of the trace's AGENT root span: the parent of whatever the agent records."""
    return hex_id(interaction_id, "span:root", 16)


def trace_headers(interaction_id: str) -> dict[str, str]:
    """``traceparent`` (sampled) and ``tracestate`` headers that make the agent's spans children of our root span.

    The sampled flag (``-01``) is required: a runtime using OpenTelemetry's default parent-based sampler records
    nothing for an unsampled parent. ``tracestate`` names the interaction (no secret: a random id).
    """
    headers = {"traceparent": f"00-{trace_hex(interaction_id)}-{root_span_hex(interaction_id)}-01"}
    if _TRACESTATE_VALUE.match(interaction_id):
        headers["tracestate"] = f"{TRACESTATE_KEY}={interaction_id}"
    return headers
