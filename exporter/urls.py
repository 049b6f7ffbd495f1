"""URLs, parsed in one place, by the parser ``requests`` itself sends with (urllib3's
``parse_url``): an allow-list decides about the very host and port a request would go to.

Two parsers can read one URL differently (urlsplit and urllib3 once disagreed about a
backslash), so everything that decides (``config.parse_http_url``, the ``/probe`` target
normalizer, the sidecar's allow-list and link policy) reads URLs through :func:`parse`. What
urllib3 normalizes away (dot segments, a stray character it percent-encodes) is also checked on
the text as written, in :attr:`Url.raw_netloc` and :attr:`Url.raw_path`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

DEFAULT_PORTS = {"http": 80, "https": 443}
_AFTER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)([^?#]*)")


class UrlError(ValueError):
    """A URL that cannot be parsed. The message never quotes the URL (it may hold a secret)."""


@dataclasses.dataclass(frozen=True)
class Url:
    scheme: str  # lower case; "" without one
    host: str  # lower case, without brackets; "" without one
    port: int | None  # as written
    path: str  # as urllib3 sends it ("" for none)
    query: str
    fragment: str
    has_auth: bool
    raw_netloc: str  # the text between "//" and the path, as written
    raw_path: str  # the path as written, before any normalization

    @property
    def effective_port(self) -> int | None:
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme)

    @property
    def host_port(self) -> tuple[str, int | None]:
        return self.host, self.effective_port


def parse(text: str) -> Url:
    """``text`` as urllib3 reads it; :class:`UrlError` if it cannot (a port over 65535, a
    broken ``[v6]``)."""
    raw = str(text)
    try:
        parts = parse_url(raw)
    except (LocationParseError, ValueError):
        raise UrlError("not a valid URL") from None
    match = _AFTER_SCHEME.match(raw.strip())
    host = (parts.host or "").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Url(
        scheme=(parts.scheme or "").lower(),
        host=host,
        port=parts.port,
        path=parts.path or "",
        query=parts.query or "",
        fragment=parts.fragment or "",
        has_auth=parts.auth is not None,
        raw_netloc=match.group(1) if match else "",
        raw_path=match.group(2) if match else "",
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, a peer's included) is this machine: localhost,
    127.0.0.0/8, ::1, or an IPv4 loopback address as a dual-stack socket shows it
    (``::ffff:127.0.0.1``)."""
    host = host.strip("[]").split("%", 1)[0].lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def host_of(text: str) -> str:
    """The host of ``text`` for a record or a log line, or '' when it cannot be parsed."""
    try:
        return parse(text).host[:253]
    except UrlError:
        return ""


def parse_host_port(text: str) -> tuple[str, int | None]:
    """A bare ``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` (nothing else: no scheme, user,
    path, query or fragment) as (host in lower case without brackets, port or None), read by
    :func:`parse` as the netloc of an http URL. :class:`UrlError` otherwise."""
    raw = str(text).strip()
    if (not raw or raw.endswith(":") or any(c in raw for c in "/?#@\\")
            or any(c.isspace() for c in raw)):
        raise UrlError("not a bare host or host:port")
    parts = parse(f"http://{raw}")
    if not parts.host or parts.raw_netloc != raw or parts.path or parts.query:
        raise UrlError("not a bare host or host:port")
    return parts.host, parts.port
