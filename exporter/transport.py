"""How every HTTP client of pizza-probe trusts TLS and what it takes from the environment.

One place for the journey, verify, the recovery link and the hand-off, so they cannot differ:

- **TLS trust.** ``--ca-file`` (a module's ``ca_file``) if given: that file alone, as the
  blackbox exporter's ``tls_config.ca_file`` and curl's ``--cacert`` do. Otherwise the first of
  ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` (both read by ``requests`` itself) and
  ``SSL_CERT_FILE`` (read by OpenSSL and most other clients) that is set; otherwise the bundle
  ``requests`` ships (certifi). Verification is never turned off.
- **Proxies.** ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (either case) are
  honoured as ``requests`` reads them, for each request's own URL, except that a loopback host
  never goes through a proxy (:func:`proxies_for`).
- **Nothing else.** A ``.netrc`` never adds credentials: sessions do not trust the environment
  as a whole (``trust_env`` is off), only the settings above.
"""

from __future__ import annotations

import binascii
import contextlib
import os
import re
import socket
import ssl
import threading
import weakref
from collections.abc import Iterator, Mapping

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from . import urls
from .config import ConfigError, read_regular_file
from .watchdog import Deadline, Watchdog

# Read in this order when no --ca-file is given.
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
MAX_CA_FILE_BYTES = 16 << 20  # the system bundle is about 200 KiB


def check_ca_file(path: str, *, name: str = "ca-file", load: bool = True) -> str:
    """``path`` if it is a regular file of PEM certificates; else a one-line ConfigError. A
    FIFO or a device (``/dev/zero``) is refused at once, never read without end.

    ``load``: OpenSSL loads the certificates (a certificate that does not parse is refused).
    Without it (the environment's CA variables, set machine-wide), the file is checked for
    well-formed PEM certificate blocks in Python: loading a system bundle is OpenSSL's first use
    in the process, ~1.3 MiB that an exporter of http:// targets never needs; an https target
    loads the bundle at its first journey anyway, and a certificate that does not parse is a
    ``tls_error`` there with OpenSSL's reason."""
    if not path:
        raise ConfigError(f"{name}: empty path")
    try:
        data = read_regular_file(path, MAX_CA_FILE_BYTES)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if os.path.isdir(path):
            reason = "a directory; give a file of PEM certificates"
        raise ConfigError(f"{name}: cannot read {path!r}: {reason}") from None
    if len(data) > MAX_CA_FILE_BYTES:
        raise ConfigError(f"{name}: {path!r} is larger than {MAX_CA_FILE_BYTES >> 20} MiB")
    if not load:
        if not _pem_certificates(data):
            raise ConfigError(f"{name}: {path!r} holds no PEM certificate")
        return path
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=data.decode("latin-1"))
    except (ssl.SSLError, ValueError):
        raise ConfigError(f"{name}: {path!r} holds no PEM certificate") from None
    return path


# OpenSSL's CA file loader also takes TRUSTED CERTIFICATE blocks (Fedora's and RHEL's
# ca-bundle.trust.crt, made by trust/p11-kit) and blanks after the BEGIN line
_PEM_BLOCK = re.compile(rb"-----BEGIN ((?:TRUSTED )?CERTIFICATE)-----[ \t]*\r?\n(.*?)"
                        rb"-----END \1-----", re.S)


def _pem_certificates(data: bytes) -> int:
    """How many PEM certificate blocks ``data`` holds, if every one is strict base64 of a DER
    SEQUENCE; 0 if there is none or one is malformed."""
    blocks = [match.group(2) for match in _PEM_BLOCK.finditer(data)]
    for block in blocks:
        try:
            der = binascii.a2b_base64(b"".join(block.split()), strict_mode=True)
        except binascii.Error:
            return 0
        if not der.startswith(b"\x30"):
            return 0
    return len(blocks)


def ca_bundle(ca_file: str | None, environ: Mapping[str, str] | None = None) -> str | bool:
    """What ``requests`` is given as ``verify``: a CA file or directory, or True (certifi)."""
    if ca_file:
        return ca_file
    environ = os.environ if environ is None else environ
    for variable in CA_VARIABLES:
        value = environ.get(variable)
        if value:
            return value
    return True


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """The CA variable in force must name a directory of certificates or a file of them: said
    at start, rather than as a failed request at every journey (or a verify that waits on a
    FIFO for ever)."""
    environ = os.environ if environ is None else environ
    for variable in CA_VARIABLES:
        value = environ.get(variable)
        if value:
            if not os.path.exists(value):
                raise ConfigError(f"{variable}: {value!r} does not exist")
            if not os.path.isdir(value):
                check_ca_file(value, name=variable, load=False)
            return


def new_session(ca_file: str | None = None) -> requests.Session:
    """A session that trusts ``ca_file`` (or the environment's CA bundle) and nothing of the
    environment beyond what this module documents."""
    session = requests.Session()
    configure(session, ca_file)
    return session


def configure(session: requests.Session, ca_file: str | None = None) -> requests.Session:
    session.trust_env = False  # no .netrc credentials; CA and proxies are set explicitly
    session.verify = ca_bundle(ca_file)
    return session


def proxies_for(url: str) -> dict[str, str]:
    """The proxies ``requests`` would use for ``url`` (``NO_PROXY`` applied); {} for none, and
    always {} for a loopback host: as Go's clients (Prometheus' own tools) do, a request to this
    machine (the hand-off with its token, a local service with the password) never goes
    through a proxy."""
    try:
        if urls.is_loopback(urls.parse(url).host):
            return {}
        return get_environ_proxies(url)
    except ValueError:  # a URL urllib cannot split: no proxy, the request will fail on its own
        return {}


def causes(exc: BaseException, limit: int = 64) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it: requests and urllib3 keep them in ``args``,
    ``reason``, ``__cause__`` and ``__context__``. At most ``limit``, each once."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo and len(seen) < limit:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend([*current.args, getattr(current, "reason", None), current.__cause__,
                     current.__context__])


def tls_failure(exc: BaseException) -> str | None:
    """The TLS error behind ``exc`` (requests wraps urllib3 wraps ssl), found by type, or None.
    For a certificate that did not verify, OpenSSL's own reason, e.g. "certificate verify
    failed: unable to get local issuer certificate"."""
    for current in causes(exc):
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {current.verify_message}"
        if isinstance(current, ssl.SSLError):
            return f"TLS error: {current.reason or type(current).__name__}"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    return None


# --- a total deadline: requests' timeout is per read and restarts with every byte ------------

class SocketTracker:
    """Every socket a session opened, so that a deadline can cut them all."""

    def __init__(self) -> None:
        self._sockets: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, sock) -> None:
        with self._lock:
            self._sockets.add(sock)

    def cut(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _TrackingAdapter(HTTPAdapter):
    def __init__(self, tracker: SocketTracker) -> None:
        self.tracker = tracker
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        tracker = self.tracker

        def tracked(base: type[HTTPConnection]) -> type[HTTPConnection]:
            def connect(self) -> None:
                base.connect(self)
                tracker.add(self.sock)
            return type(f"Tracked{base.__name__}", (base,), {"connect": connect})

        self.poolmanager.pool_classes_by_scheme = {
            "http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": tracked(HTTPConnection)}),
            "https": type("Pool", (HTTPSConnectionPool,), {"ConnectionCls": tracked(HTTPSConnection)}),
        }


def track_sockets(session: requests.Session) -> SocketTracker:
    """Mount an adapter on ``session`` that remembers its sockets, for :func:`hard_deadline`."""
    tracker = SocketTracker()
    adapter = _TrackingAdapter(tracker)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return tracker


class Connections:
    """A session and the tracker of its sockets, made once and kept across the journeys of one
    target (one journey at a time): its adapter, pool manager and connection classes are not
    rebuilt for every journey. Connections are reused within a journey where the target keeps
    them alive, and closed at its end (:meth:`release`), so that every journey opens its own,
    as a new visitor (and the blackbox exporter) would, and never sends on one the server is
    closing after its idle timeout."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.tracker = track_sockets(self.session)

    def release(self) -> None:
        """The end of a journey: its connections closed, its cookies forgotten."""
        self.session.close()  # closes the pooled connections; the session stays usable
        self.session.cookies.clear()

    def close(self) -> None:
        self.session.close()


@contextlib.contextmanager
def hard_deadline(tracker: SocketTracker, seconds: float,
                  watchdog: Watchdog | None = None) -> Iterator[Deadline]:
    """Within the block, the tracked sockets are shut down ``seconds`` from now: a server that
    drips one byte a second cannot stretch a call. The value's ``is_set()`` tells whether the
    cut happened. ``watchdog``: the process's (one thread for every deadline); without one, a
    watchdog of its own for this block (a thread)."""
    if watchdog is None:
        with Watchdog(name="deadline-once") as own, hard_deadline(tracker, seconds, own) as hit:
            yield hit
        return
    # The watchdog marks a deadline fired, then runs its callback: a block that ends in
    # between cannot cancel it. The cut must then not land on the sockets of a later block
    # (the next request of the journey reuses the connection): it cuts only while this block
    # runs, and the block's end waits for a cut under way.
    lock = threading.Lock()
    active = True

    def cut() -> None:
        with lock:
            if active:
                tracker.cut()

    deadline = watchdog.schedule(seconds, cut)
    try:
        yield deadline
    finally:
        watchdog.cancel(deadline)
        with lock:
            active = False
