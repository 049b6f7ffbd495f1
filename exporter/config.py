"""Parsing and validating configuration values: durations, URLs, listen addresses.

Every parser raises :class:`ConfigError` with a one-line, user-facing message. The
command line turns that into ``error: ...`` and exit status 2.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat

from . import __version__


class ConfigError(ValueError):
    """A configuration value is invalid. The message is one line, safe to print."""


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


MAX_DURATION = 365 * 86400.0  # any duration flag; threading and sockets overflow near 292 years


def parse_duration(text: str, *, name: str = "duration", allow_zero: bool = False) -> float:
    """Seconds from plain seconds (``15``, ``0.5``) or Prometheus style (``15s``, ``1m30s``, ``500ms``)."""
    raw = str(text).strip()
    if not raw:
        raise ConfigError(f"{name}: empty duration")
    try:
        seconds = float(raw)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or pos == 0:
            raise ConfigError(
                f"{name}: {raw!r} is not a duration (use seconds like 15 or 0.5, or 15s, 1m, 500ms)"
            ) from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}: {raw!r} is not a finite duration")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "must not be negative" if allow_zero else "must be greater than zero"
        raise ConfigError(f"{name}: {bound}, got {raw!r}")
    if seconds > MAX_DURATION:  # a wait or a socket timeout that long overflows: a traceback
        raise ConfigError(f"{name}: at most a year ({MAX_DURATION:g}s), got {raw!r}")
    return seconds


def parse_http_url(text: str, *, name: str = "url") -> str:
    """An absolute http(s) URL with a host, without trailing slash. Never echoes credentials."""
    from .urls import UrlError, parse

    raw = str(text).strip()
    try:
        parts = parse(raw)
    except UrlError:
        raise ConfigError(f"{name}: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not raw.lower().startswith(parts.scheme + "://"):
        raise ConfigError(f"{name}: must start with http:// or https://")
    if not parts.host:
        raise ConfigError(f"{name}: has no host")
    if parts.has_auth or "@" in parts.raw_netloc:
        raise ConfigError(f"{name}: must not contain a user or password")
    if parts.query or parts.fragment:
        raise ConfigError(f"{name}: must not contain a query or fragment")
    return raw.rstrip("/")


# Two URL parsers can read one URL differently: urllib3 ends a host at a backslash, urlsplit
# drops tabs and reads only the brackets of "evil.test[::1]". What an allow-list checks must
# therefore be plain: a host[:port] of this shape, and no space, control or non-ASCII character.
PLAIN_NETLOC = re.compile(r"(?:\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::[0-9]+)?")


def is_plain_ascii(text: str) -> bool:
    """True if ``text`` has no space, control or non-ASCII character."""
    return all(" " < char < "\x7f" for char in text)


def parse_listen_address(text: str, *, name: str = "listen") -> tuple[str, int]:
    """``host:port``, ``:port`` (all interfaces) or ``[::1]:port`` into (host, port)."""
    raw = str(text).strip()
    host, sep, port_text = raw.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"{name}: {raw!r} is not host:port (for example :9816 or 127.0.0.1:9816)")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}: port {port} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", port


MAX_SECRET_BYTES = 4096


def read_regular_file(path: str, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of ``path``, which must be a regular file: a device
    (``/dev/zero``), a FIFO or a directory raises OSError at once rather than being read without
    end or blocking. The FIFO is opened without blocking, then refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except ValueError:  # a NUL byte in the path
        raise OSError(errno.EINVAL, "not a valid path") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        chunks, size = [], 0
        while size <= max_bytes:  # bounded: each read returns at least one byte or ends it
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_secret_file(path: str, *, name: str = "password-file") -> str:
    """The first line of a secret file (a regular file of at most 4 KiB), without its newline."""
    try:
        data = read_regular_file(path, MAX_SECRET_BYTES)
        if len(data) > MAX_SECRET_BYTES:
            raise ConfigError(f"{name}: {path!r} is larger than {MAX_SECRET_BYTES} bytes; "
                              "a password file holds the password on its first line")
        value = re.split(r"\r\n|\r|\n", data.decode("utf-8"), maxsplit=1)[0]
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"{name}: cannot read {path!r}: {reason}") from None
    if not value:
        raise ConfigError(f"{name}: {path!r} is empty")
    return value


PUBLIC_FACTORY_URL = "https://pizza-factory.cs329.click"


MAX_TIMEOUT = 86400.0  # a request's timeout: a day is far past any answer worth waiting for


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """What one journey needs: the target and the module settings. Plain, immutable data.

    ``factory_url`` None: the factory the service names at ``GET /api/docs``, else the public
    one (see :mod:`exporter.discovery`). ``ca_file`` None: the environment's CA bundle (see
    :mod:`exporter.transport`)."""

    service_url: str = "http://localhost:3000"
    factory_url: str | None = None
    email: str = "d@jwt.com"
    password: str = dataclasses.field(default="diner", repr=False)
    timeout: float = 10.0
    order_timeout: float = 45.0
    slow_threshold: float = 10.0
    max_body_bytes: int = 1 << 20
    user_agent: str = f"pizza-probe/{__version__}"
    read_only: bool = False  # health, login, menu, franchises, logout: no order is placed
    ca_file: str | None = None

    def __post_init__(self) -> None:
        parse_http_url(self.service_url, name="service-url")
        if self.factory_url is not None:
            parse_http_url(self.factory_url, name="factory-url")
        if not self.password:
            # The real service skips the password check for an empty password: any account
            # would "log in", so an empty password is never sent.
            raise ConfigError("password: must not be empty (the JWT Pizza service lets an empty "
                              "password log in as anyone)")
        for field in ("timeout", "order_timeout", "slow_threshold"):
            if not getattr(self, field) > 0:
                raise ConfigError(f"{field.replace('_', '-')}: must be greater than zero")
        for field in ("timeout", "order_timeout"):  # a socket's timeout overflows past ~292 years
            if getattr(self, field) > MAX_TIMEOUT:
                raise ConfigError(f"{field.replace('_', '-')}: at most {MAX_TIMEOUT:g}s (a day)")
        if self.max_body_bytes < 1024:
            raise ConfigError("max-body-size: must be at least 1024 bytes")
