"""Strip secrets from anything the sink writes to MLflow.

Four rules, applied to every string and every nested structure:
- a mapping key that names a secret (``authorization``, ``token``, ``api_key``, ``secret``, ``password``,
  ``key`` ...; camelCase and kebab-case too) gets its value replaced. Counters such as ``totalTokenCount`` or
  ``prompt_tokens`` are *not* secrets: only keys whose last word is a secret word count;
- ``Bearer <x>`` / ``Basic <x>`` credentials and AWS access key ids (``AKIA...``) inside text are masked;
- any value listed in ``known_secrets`` (the configured A2A token and AWS keys) is masked wherever it appears;
- URLs inside text lose their userinfo and secret query values (``_urls.safe_url``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .._urls import is_secret_name as is_secret_key
from .._urls import scrub_urls

REDACTED = "[REDACTED]"

_TEXT_PATTERNS = (
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE), rf"\1 {REDACTED}"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
)


class Redactor:
    """Callable that returns a redacted deep copy of JSON-like data (or a redacted string)."""

    def __init__(self, known_secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret containing another is masked whole; very short values would mask noise.
        self._known = sorted({s for s in known_secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._known:
            value = value.replace(secret, REDACTED)
        for pattern, replacement in _TEXT_PATTERNS:
            value = pattern.sub(replacement, value)
        return scrub_urls(value)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                key: (REDACTED if isinstance(key, str) and is_secret_key(key) and item else self(item))
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self(item) for item in value]
        return value
