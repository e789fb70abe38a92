"""URLs made safe to show or store: no ``user:password@`` and no secret-looking query values.

Everything derived from a URL (run names, tags, spans, records, log lines, ``--json``) goes through
:func:`safe_url`; the live request itself still uses the URL as the user gave it. A leaf module (imports nothing
from the package) so ``errors``, ``config``, ``a2a`` and ``sinks`` can all use it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "REDACTED"

_SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "key",
        "apikey",
        "authorization",
        "auth",
        "cookie",
        "credential",
        "credentials",
        "signature",
        "sig",
        "sessionid",
    }
)
_SECRET_NAMES = frozenset({"awsaccesskeyid"})  # S3 signature v2 (``AWSAccessKeyId=AKIA...``) ends in "id"
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^a-zA-Z0-9]+")
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@")


def is_secret_name(name: str) -> bool:
    """True when a key or parameter name names a secret: its last word (camel/snake/kebab split) is a secret word.

    ``api_key``, ``accessToken``, ``X-Amz-Signature``, ``sig`` are; counters such as ``totalTokenCount`` are not.
    """
    words = [w.lower() for w in _SPLIT.split(_CAMEL.sub("_", name)) if w]
    return bool(words) and (words[-1] in _SECRET_WORDS or "".join(words) in _SECRET_NAMES)


def _mask_params(query: str) -> str:
    """``a=1&api_key=s`` -> ``a=1&api_key=REDACTED``; other parameters are kept byte for byte."""
    pieces = []
    for piece in query.split("&"):
        name, eq, value = piece.partition("=")
        if eq and value and is_secret_name(unquote(name)):
            piece = f"{name}={MASK}"
        pieces.append(piece)
    return "&".join(pieces)


def safe_url(url: str) -> str:
    """The URL without userinfo and with secret query (and fragment) parameter values masked.

    A URL with nothing to hide is returned unchanged (a parse round trip would turn ``sqlite:////x`` into
    ``sqlite:///x``). A string that does not parse as a URL still loses anything before an ``@`` in its authority.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: strip what looks like userinfo, keep the rest
        return _USERINFO.sub(r"\1", url)
    netloc = parts.netloc.rpartition("@")[2]  # keeps IPv6 brackets and the port exactly as given
    query, fragment = _mask_params(parts.query), _mask_params(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def scrub_urls(text: str) -> str:
    """Every URL inside free text (an error message, a log line) made safe with :func:`safe_url`."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: safe_url(m.group(0)), text)
