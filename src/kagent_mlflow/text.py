"""Text that is not valid Unicode: kept losslessly in the spool, shown and logged in an escaped, readable form.

Python hands us such text in two ways: command-line bytes that are not UTF-8 arrive as lone surrogates
(``$'bad \\xff\\xfe'`` becomes ``'bad \\udcff\\udcfe'``, PEP 383), and a library caller can pass a lone surrogate
(``'x \\ud800'``) directly. Neither can be encoded as UTF-8, so printing it, writing it to MLflow or dumping it as
JSON with pydantic fails. The spool keeps the exact text (JSON ``\\uXXXX`` escapes); everything a person reads
(terminal, MLflow tags, artifacts, traces) gets ``printable(text)``: the bytes as the user typed them
(``bad \\xff\\xfe``), other lone surrogates as ``\\ud800``.
"""

from __future__ import annotations

from typing import Any


def is_encodable(text: str) -> bool:
    """True when ``text`` encodes as UTF-8 (the common case: checked without copying)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """``text`` itself when valid; else with undecodable bytes as ``\\xNN`` and lone surrogates as ``\\uXXXX``."""
    if is_encodable(text):
        return text
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte smuggled in by surrogateescape (PEP 383): show the byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def printable_data(value: Any) -> Any:
    """``printable`` applied to every string (and mapping key) of JSON-like data."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_data(v) for v in value]
    return value


# C0 controls but newline and tab, DEL, and C1 controls (0x9b is a one-byte CSI on some terminals).
_TERMINAL_CONTROLS = {
    code: f"\\x{code:02x}" for code in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0))
}


def for_terminal(text: str) -> str:
    """``printable(text)`` with control characters other than newline and tab escaped (``\\x1b``): what an agent or a
    file says is shown, it cannot move the cursor, recolour, retitle or clear the user's terminal."""
    return printable(text).translate(_TERMINAL_CONTROLS)
