"""An HTTP client for the JWT Pizza service and its factory, on ``requests``.

One :class:`PizzaClient` per journey (it owns one ``requests.Session``). Every call has a timeout,
a cap on the body size, no redirects, ``Authorization: Bearer`` where a token is needed and a
``User-Agent`` naming the probe. Every failure is raised as :class:`StepFailure` with a documented
reason and a detail that holds no secret (no token, no password, no link key or code).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import weakref
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from . import parse, transport
from .config import PUBLIC_FACTORY_URL, ProbeConfig
from .redact import RecoveryLink
from .result import StepFailure

_NOT_JSON = object()
_CHUNK = 64 * 1024
FACTORY_FAILURE_MESSAGE = "Failed to fulfill order at factory"
# Node's fetch() error, passed on by the service when it cannot reach its factory at all.
FACTORY_UNREACHABLE_MESSAGE = "fetch failed"


class _SocketTracker:
    """Every socket a session opened, so that a step's deadline can cut them all."""

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


class _DeadlineAdapter(HTTPAdapter):
    """requests' per-read timeout restarts with every byte, so a server that drips one byte a
    second never trips it. This adapter tracks its sockets; ``_request`` shuts them down when
    the step's whole time is up."""

    def __init__(self, tracker: _SocketTracker) -> None:
        self.tracker = tracker
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        tracker = self.tracker

        def tracked(base):
            class Tracked(base):
                def connect(self) -> None:
                    super().connect()
                    tracker.add(self.sock)
            return Tracked

        self.poolmanager.pool_classes_by_scheme = {
            "http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": tracked(HTTPConnection)}),
            "https": type("Pool", (HTTPSConnectionPool,), {"ConnectionCls": tracked(HTTPSConnection)}),
        }


class PizzaClient:
    def __init__(self, config: ProbeConfig, session: requests.Session | None = None) -> None:
        self.config = config
        # A monotonic time no request may outlast (a scrape's time budget); None: no budget.
        self.deadline: float | None = None
        # TLS trust and proxies as exporter.transport documents them; never .netrc credentials
        self.session = transport.configure(session or requests.Session(), config.ca_file)
        self._sockets = _SocketTracker()
        adapter = _DeadlineAdapter(self._sockets)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "PizzaClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        body: Any = None,
        token: str | None = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON or _NOT_JSON). Raises StepFailure for transport problems."""
        headers = {"User-Agent": self.config.user_agent, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        if self.deadline is not None:
            left = self.deadline - started
            if left <= 0:
                raise StepFailure("timeout", "the probe's time budget ran out")
            timeout = min(timeout, left)
        deadline_hit = threading.Event()

        def cut() -> None:
            deadline_hit.set()
            self._sockets.cut()

        watchdog = threading.Timer(timeout, cut)
        watchdog.daemon = True
        watchdog.start()
        timed_out = StepFailure("timeout", f"no answer within {timeout:g}s")
        try:
            try:
                response = self.session.request(
                    method,
                    url,
                    json=body,
                    headers=headers,
                    timeout=timeout,
                    stream=True,
                    allow_redirects=False,
                    proxies=transport.proxies_for(url),
                )
                try:
                    raw = self._read_capped(response)
                finally:
                    response.close()
            except requests.RequestException as exc:
                if deadline_hit.is_set() or time.monotonic() - started >= timeout:
                    raise timed_out from None
                raise _transport_failure(exc, timeout) from None
            except ValueError:  # urllib3's LocationParseError: a host it cannot encode
                raise StepFailure("connection_error", "the URL's host is not valid") from None
            if deadline_hit.is_set():  # the cut ended a body early: it is not the whole answer
                raise timed_out
        finally:
            watchdog.cancel()
        status = response.status_code
        try:
            data = json.loads(raw.decode("utf-8")) if raw else _NOT_JSON
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = _NOT_JSON
        return status, data

    def _read_capped(self, response: requests.Response) -> bytes:
        cap = self.config.max_body_bytes
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > cap:
            raise StepFailure(
                "bad_response", f"body of {int(length)} bytes is over the {cap}-byte cap",
                status=response.status_code,
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise StepFailure(
                    "bad_response", f"body is over the {cap}-byte cap", status=response.status_code
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _service(self, path: str) -> str:
        return self.config.service_url + path

    # --- steps -----------------------------------------------------------------------------

    def health(self) -> str:
        """``GET /``: the service's version (it answers 200 even when MySQL is down)."""
        status, data = self._request("GET", self._service("/"), timeout=self.config.timeout)
        _expect_ok(status, data)
        return _parsed(parse.health_version, data, status)

    def login(self) -> str:
        """``PUT /api/auth``: a bearer token for the configured user."""
        status, data = self._request(
            "PUT",
            self._service("/api/auth"),
            timeout=self.config.timeout,
            body={"email": self.config.email, "password": self.config.password},
        )
        _expect_ok(status, data, auth_statuses=(401, 403, 404))
        return _parsed(parse.login_token, data, status)

    def cheapest_menu_item(self, token: str) -> parse.MenuItem:
        status, data = self._request(
            "GET", self._service("/api/order/menu"), timeout=self.config.timeout, token=token
        )
        _expect_ok(status, data)
        return _parsed(parse.cheapest_menu_item, data, status)

    def first_store(self, token: str) -> parse.Store:
        status, data = self._request(
            "GET", self._service("/api/franchise"), timeout=self.config.timeout, token=token
        )
        _expect_ok(status, data)
        return _parsed(parse.first_store, data, status)

    def order(self, token: str, store: parse.Store, item: parse.MenuItem) -> parse.OrderAnswer:
        """``POST /api/order`` for one item. A 200 is returned (the journey judges its link);
        anything else is raised, with the chaos link attached when the answer carried one."""
        body = {
            "franchiseId": store.franchise_id,
            "storeId": store.store_id,
            "items": [{"menuId": item.id, "description": item.title, "price": item.price}],
        }
        status, data = self._request(
            "POST",
            self._service("/api/order"),
            timeout=self.config.order_timeout,
            body=body,
            token=token,
        )
        link = parse.chaos_link(data)
        if status == 200:
            try:
                return parse.order_answer(data)
            except parse.ShapeError as exc:
                raise StepFailure("bad_response", str(exc), status=status, link=link) from None
        if status >= 500 and parse.message(data) == FACTORY_FAILURE_MESSAGE:
            detail = FACTORY_FAILURE_MESSAGE + (" (with chaos link)" if link else "")
            raise StepFailure("factory_error", detail, status=status, link=link)
        if status >= 500 and parse.message(data) == FACTORY_UNREACHABLE_MESSAGE:
            raise StepFailure("factory_unreachable", f"HTTP {status}: {FACTORY_UNREACHABLE_MESSAGE}"
                              " (the service cannot reach its factory)", status=status, link=link)
        raise _status_failure(status, data, link=link)

    def docs_factory(self) -> str | None:
        """``GET /api/docs``: the factory URL the service names (``config.factory``); None if it
        does not say (a 404 from an older fork, or no such field)."""
        status, data = self._request("GET", self._service("/api/docs"), timeout=self.config.timeout)
        if status == 404:
            return None
        _expect_ok(status, data)
        return _parsed(parse.docs_factory, data, status)

    def verify(self, jwt: str, factory_url: str | None = None) -> None:
        """``POST <factory>/api/order/verify``: raises ``bad_jwt`` if the factory rejects it.
        ``factory_url``: the one the journey chose; default the configured or public one."""
        factory_url = factory_url or self.config.factory_url or PUBLIC_FACTORY_URL
        status, data = self._request(
            "POST",
            factory_url + "/api/order/verify",
            timeout=self.config.timeout,
            body={"jwt": jwt},
        )
        if status == 403:
            raise StepFailure("bad_jwt", "factory rejected the pizza JWT", status=status)
        _expect_ok(status, data)
        if not _parsed(parse.verify_valid, data, status):
            raise StepFailure("bad_jwt", "factory did not call the pizza JWT valid", status=status)

    def logout(self, token: str) -> None:
        """``DELETE /api/auth``, the only DELETE the probe ever sends."""
        status, data = self._request(
            "DELETE", self._service("/api/auth"), timeout=self.config.timeout, token=token
        )
        _expect_ok(status, data)
        _parsed(parse.logout_ok, data, status)


def _expect_ok(status: int, data: Any, auth_statuses: tuple[int, ...] = (401, 403)) -> None:
    if status == 200 and data is _NOT_JSON:
        raise StepFailure("bad_response", "body is not JSON", status=status)
    if status != 200:
        raise _status_failure(status, data, auth_statuses=auth_statuses)


def _status_failure(
    status: int,
    data: Any,
    *,
    auth_statuses: tuple[int, ...] = (401, 403),
    link: RecoveryLink | None = None,
) -> StepFailure:
    message = parse.message(data) if data is not _NOT_JSON else ""
    detail = f"HTTP {status}" + (f": {message}" if message else "")
    if 300 <= status < 400:
        detail += " (redirects are not followed)"
    reason = "auth_error" if status in auth_statuses else "http_error"
    return StepFailure(reason, detail, status=status, link=link)


def _parsed(parser, data: Any, status: int):
    if data is _NOT_JSON:
        raise StepFailure("bad_response", "body is not JSON", status=status)
    try:
        return parser(data)
    except parse.ShapeError as exc:
        raise StepFailure("bad_response", str(exc), status=status) from None


def _transport_failure(exc: requests.RequestException, timeout: float) -> StepFailure:
    if isinstance(exc, requests.Timeout):
        return StepFailure("timeout", f"no answer within {timeout:g}s")
    tls = transport.tls_failure(exc)
    if tls is not None:
        return StepFailure("tls_error", tls)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        if "IncompleteRead" in repr(exc):
            return StepFailure("bad_response", "body truncated")
        return StepFailure("connection_error", "connection broken while reading the body")
    return StepFailure("connection_error", _describe_connection_error(exc))


def _describe_connection_error(exc: BaseException) -> str:
    """A short description of why a connection failed, without the URL."""
    text = repr(exc)
    for needle, description in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host name did not resolve"),
        ("nodename nor servname", "host name did not resolve"),
        ("Temporary failure in name resolution", "host name did not resolve"),
        ("NameResolutionError", "host name did not resolve"),
        ("Connection reset", "connection reset by peer"),
        ("RemoteDisconnected", "server closed the connection without an answer"),
        ("Connection aborted", "connection aborted"),
    ):
        if needle in text:
            return description
    return "connection failed"
