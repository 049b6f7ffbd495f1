"""Redaction of secrets: the recovery link's key and fix code, and URLs found in free text.

The recovery link embeds the vendor's factory API key and a fix code. Anything that may reach a
log line, a metric, an exception or an HTTP answer goes through :func:`redact_url` or
:func:`redact_text` first. :class:`RecoveryLink` holds a link and prints only its redacted form.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

MASK = "***"
# Path segments of the known link forms that are not secret; every other segment is masked.
_PUBLIC_SEGMENTS = frozenset({"", "api", "support", "report", "order", "vendor"})
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """The URL with every non-public path segment, query value, user and fragment masked.

    ``https://h/api/support/KEY/report/CODE`` -> ``https://h/api/support/***/report/***``;
    ``https://h/api/report?apiKey=K&fixCode=C`` -> ``https://h/api/report?apiKey=***&fixCode=***``.
    """
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    scheme = parts.scheme.lower() if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme) else MASK
    if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", host):
        host = MASK
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    segments = [seg if seg.lower() in _PUBLIC_SEGMENTS else MASK for seg in parts.path.split("/")]
    path = "/".join(segments)
    query = "&".join(
        f"{key}={MASK}" if re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", key) else f"{MASK}={MASK}"
        for key, _ in parse_qsl(parts.query, keep_blank_values=True)
    )
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def secret_parts(url: str) -> list[str]:
    """The values :func:`redact_url` masks in ``url``: a link's key and fix code, by value."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return []
    values = [seg for seg in parts.path.split("/") if seg.lower() not in _PUBLIC_SEGMENTS]
    values += [value for _, value in parse_qsl(parts.query, keep_blank_values=True) if value]
    values += [v for v in (parts.username, parts.password, parts.fragment) if v]
    return values


def mask_values(text: str, secrets: Iterable[str | None]) -> str:
    """Redaction by value: every secret in ``secrets`` (a password, a token, a link's key and
    fix code) replaced by ``***`` wherever it stands in ``text``, the longest first."""
    forms = {form for s in secrets if s for form in _encoded_forms(s)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


@functools.lru_cache(maxsize=256)
def _encoded_forms(secret: str) -> tuple[str, ...]:
    """``secret`` and the forms a service that echoes it may quote it in: URL-encoded (from a
    query or a form, either case of hex), HTML-escaped (from a template), JSON-escaped (from a
    body quoted as text) and base64 (from a header)."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret),
             html.escape(secret), html.escape(secret, quote=False),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in forms}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode()
        forms |= {encoded, encoded.rstrip("=")}
    return tuple(form for form in forms if form)


def scrub(text: str, secrets: Iterable[str | None] = (), limit: int = 120) -> str:
    """:func:`mask_values`, then :func:`redact_text`: the one function for text that came from
    outside (an answer's message, an exception)."""
    return redact_text(mask_values(str(text), secrets), limit)


def redact_text(text: str, limit: int = 120) -> str:
    """Free text (an error message from a response body) cut to ``limit`` with URLs redacted."""
    cleaned = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), str(text))
    cleaned = "".join(ch if ch.isprintable() else " " for ch in cleaned).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


class RecoveryLink:
    """A chaos-ending link found in an order answer. ``str()`` and ``repr()`` are redacted;
    only :meth:`reveal` gives the callable URL, and only the recovery sidecar should call it."""

    __slots__ = ("_url", "key")

    def __init__(self, url: str, key: str) -> None:
        self._url = url
        self.key = key  # which of the four names the service used

    def reveal(self) -> str:
        return self._url

    @property
    def redacted(self) -> str:
        return redact_url(self._url)

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"RecoveryLink({self.redacted!r}, key={self.key!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecoveryLink) and (self._url, self.key) == (other._url, other.key)

    def __hash__(self) -> int:
        return hash((self._url, self.key))
