"""Calling the factory's chaos-ending link, safely.

The link arrives in a response body, so whoever controls that body could make us fetch any URL.
:class:`LinkPolicy` admits only http(s) links to allow-listed hosts on the two known resolver
paths; :func:`call_link` GETs an admitted link with a short timeout, follows a redirect only to
an admitted URL on the same host, and classifies the resolver's answer. No error or log line
carries the link in clear.
"""

from __future__ import annotations

import dataclasses
import json
import re
from urllib.parse import unquote, urljoin

import requests

from . import transport, urls
from .config import PLAIN_NETLOC, ConfigError, is_plain_ascii
from .redact import RecoveryLink, redact_url, scrub, secret_parts

DEFAULT_ALLOWED_HOSTS = ("pizza-factory.cs329.click", "cs329.cs.byu.edu")
RESULTS = ("resolved", "no_chaos", "unresolved", "error", "refused", "dry_run")
_RESOLVER_PATHS = (re.compile(r"/api/support/[^/]+/report/[^/]+"), re.compile(r"/api/report"))
_MAX_BODY = 64 * 1024
_MAX_REDIRECTS = 2


def _host_port(url: str) -> tuple[str, int | None]:
    """(host, port) as requests would connect; raises ValueError (UrlError) if unparsable."""
    return urls.parse(url).host_port


_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\]")


def parse_allow_entry(entry: str) -> tuple[str, int | None]:
    """An allow-list entry, a bare ``host`` (any port), ``host:port`` or ``[v6]:port``, into
    (host, port or None). A URL is refused rather than cut to its host (``http://x/y`` once
    meant ``x:80``, its path silently dropped), and a value with a path is never quoted back: a
    pasted recovery link holds a key. Raises ConfigError with a one-line message."""
    text = str(entry).strip().lower()
    if not any(c in text for c in "/?#@\\"):
        host = text  # its own checks first, whose messages quote it: it holds no path
        if ":" in text and not (text.startswith("[") and text.endswith("]")):
            host, _, port_text = text.rpartition(":")
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ConfigError(f"allow-host: {entry!r} has no valid port (1-65535)")
        if not _HOST.fullmatch(host):
            raise ConfigError(f"allow-host: {entry!r} is not a host name or host:port")
    try:
        return urls.parse_host_port(text)
    except urls.UrlError:
        raise ConfigError("allow-host: give a bare HOST or HOST:PORT, with no scheme, path or "
                          "user" + _url_hint(str(entry))) from None


def _url_hint(text: str) -> str:
    """For an http(s) URL, the entry that names its host: `` (for that URL: x:80)``."""
    try:
        parts = urls.parse(text)
    except urls.UrlError:
        return ""
    if "://" not in text or parts.scheme not in ("http", "https") or not parts.host:
        return ""
    host, port = parts.host_port
    return f" (for that URL: {f'[{host}]' if ':' in host else host}:{port})"


class LinkPolicy:
    """Which links may be called. Entries are ``host`` (any port) or ``host:port``."""

    def __init__(self, allowed: list[str] | tuple[str, ...], factories: tuple[str, ...] = ()) -> None:
        """``allowed``: allow-list entries (``parse_allow_entry``); ``factories``: factory URLs,
        each allowing its own host and port."""
        self.entries = {parse_allow_entry(entry) for entry in allowed}
        self.entries |= {urls.parse(url).host_port for url in factories}

    @classmethod
    def default(cls, factory_url: str | None,
                extra: list[str] | tuple[str, ...] = ()) -> LinkPolicy:
        """The public factory hosts, the configured factory's host and ``extra``. A factory the
        service names at ``GET /api/docs`` is not added: an answer never widens the list."""
        return cls([*DEFAULT_ALLOWED_HOSTS, *extra], (factory_url,) if factory_url else ())

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be called, or None if it may."""
        if len(url) > 2048:
            return "link is too long"
        if "\\" in url or not is_plain_ascii(url):  # see config.PLAIN_NETLOC
            return "link has characters URL parsers read differently"
        try:
            parts = urls.parse(url)
        except urls.UrlError:
            return "link is not a valid URL"
        host, port = parts.host_port
        if parts.scheme not in ("http", "https"):
            return f"scheme {parts.scheme or '(none)'!r} is not http or https"
        if parts.has_auth or "@" in parts.raw_netloc:
            return "link carries credentials"
        if not PLAIN_NETLOC.fullmatch(parts.raw_netloc.lower()):
            return "link's host is not a plain host name or address"
        if {".", ".."} & set(unquote(parts.raw_path).split("/")):
            return "link's path has '.' or '..' segments"
        if (host, port) not in self.entries and (host, None) not in self.entries:
            return f"host {host or '(none)'!r} is not on the allow-list"
        if not any(p.fullmatch(parts.path) for p in _RESOLVER_PATHS):
            return "path is not a known recovery-link path"
        return None

    def describe(self) -> list[str]:
        return sorted(f"{h}:{p}" if p else h for h, p in self.entries)


@dataclasses.dataclass(frozen=True)
class LinkOutcome:
    result: str  # one of RESULTS
    detail: str
    status: int | None = None


def classify_answer(status: int, body: bytes, secrets: list[str] | tuple[str, ...] = ()) -> LinkOutcome:
    """Both resolver forms: ``{"message": ...}`` (current) and ``{"msg": ...}`` (older). The
    text shown is the factory's, with ``secrets`` (the link's key and code) redacted by value."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    text = ""
    if isinstance(data, dict):
        for key in ("message", "msg"):
            if isinstance(data.get(key), str):
                text = data[key]
                break
    lowered = text.lower()
    shown = scrub(text, secrets, limit=80) if text.isprintable() else ""
    if "unresolved" in lowered or "failed to resolve" in lowered:
        return LinkOutcome("unresolved", shown, status)
    if status == 200 and "no chaos" in lowered:
        return LinkOutcome("no_chaos", shown, status)
    if status == 200 and ("problem resolved" in lowered or "chaos resolved" in lowered):
        return LinkOutcome("resolved", shown, status)
    return LinkOutcome("error", f"unexpected answer HTTP {status}" + (f": {shown}" if shown else ""),
                       status)


def call_link(link: RecoveryLink, policy: LinkPolicy, *, timeout: float = 5.0,
              session: requests.Session | None = None, user_agent: str = "pizza-probe",
              ca_file: str | None = None) -> LinkOutcome:
    """GET the link if the policy admits it. Never raises: every failure is an outcome. The
    whole call (redirects and the answer included) ends within ``timeout``: a total deadline,
    not requests' per-read one, so a factory that drips its answer cannot hold it.
    TLS is trusted as :mod:`exporter.transport` says (``ca_file``, else the environment)."""
    url = link.reveal()
    refusal = policy.refusal(url)
    if refusal:
        return LinkOutcome("refused", refusal)
    own_session = session is None
    session = transport.configure(session or requests.Session(), ca_file)
    tracker = transport.track_sockets(session)
    try:
        with transport.hard_deadline(tracker, timeout) as cut:
            try:
                return _follow(url, policy, session, timeout, user_agent, cut)
            except Exception as exc:  # noqa: BLE001 (a library's surprise is still an outcome)
                if cut.is_set():
                    return LinkOutcome("error", f"no answer within {timeout:g}s")
                return LinkOutcome("error", f"request failed: {type(exc).__name__}")
    finally:
        if own_session:
            session.close()


def _follow(url: str, policy: LinkPolicy, session: requests.Session, timeout: float,
            user_agent: str, cut) -> LinkOutcome:
    secrets = secret_parts(url)
    for _ in range(_MAX_REDIRECTS + 1):
        try:
            response = session.get(url, timeout=timeout, allow_redirects=False, stream=True,
                                   headers={"User-Agent": user_agent},
                                   proxies=transport.proxies_for(url))
            try:
                body = _read_capped(response)
            finally:
                response.close()
        except requests.Timeout:
            return LinkOutcome("error", f"no answer within {timeout:g}s")
        except requests.RequestException as exc:
            if cut.is_set():
                return LinkOutcome("error", f"no answer within {timeout:g}s")
            tls = transport.tls_failure(exc)
            return LinkOutcome("error", f"request failed: {tls or type(exc).__name__}")
        if cut.is_set():  # the deadline ended the body early: not the whole answer
            return LinkOutcome("error", f"no answer within {timeout:g}s")
        if response.is_redirect:
            target = urljoin(url, response.headers.get("Location", ""))
            try:
                same_host = _host_port(target) == _host_port(url)
            except ValueError:  # a port of 99999, a broken [v6]: refused, and counted
                return LinkOutcome("refused", "redirect refused: link is not a valid URL",
                                   response.status_code)
            if not same_host:
                return LinkOutcome("refused", "redirect to another host "
                                   f"({redact_url(target)})", response.status_code)
            refusal = policy.refusal(target)
            if refusal:
                return LinkOutcome("refused", f"redirect refused: {refusal}", response.status_code)
            url = target
            secrets += secret_parts(url)
            continue
        return classify_answer(response.status_code, body, secrets)
    return LinkOutcome("error", "too many redirects")


def _read_capped(response: requests.Response) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(8192):
        size += len(chunk)
        if size > _MAX_BODY:
            break
        chunks.append(chunk)
    return b"".join(chunks)
