"""An HTTP client for the JWT Pizza service and its factory, on ``requests``.

One :class:`PizzaClient` per journey (it owns one ``requests.Session``). Every call has a timeout,
a cap on the body size, no redirects, ``Authorization: Bearer`` where a token is needed and a
``User-Agent`` naming the probe. Every failure is raised as :class:`StepFailure` with a documented
reason and a detail that holds no secret (no token, no password, no link key or code).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import requests
import urllib3.exceptions

from . import parse, transport
from .config import PUBLIC_FACTORY_URL, ProbeConfig
from .redact import RecoveryLink, mask_values, secret_parts
from .result import StepFailure
from .watchdog import Watchdog

_NOT_JSON = object()
_CHUNK = 64 * 1024
FACTORY_FAILURE_MESSAGE = "Failed to fulfill order at factory"
# Node's fetch() error, passed on by the service when it cannot reach its factory at all.
FACTORY_UNREACHABLE_MESSAGE = "fetch failed"


class PizzaClient:
    """``connections``: a target's session, kept across journeys (released, not closed, at the
    end of this client); else ``session`` or a new one, closed at the end. ``watchdog``: the
    process's deadline watchdog (else one of the client's own, for its requests)."""

    def __init__(self, config: ProbeConfig, session: requests.Session | None = None, *,
                 connections: transport.Connections | None = None,
                 watchdog: Watchdog | None = None) -> None:
        self.config = config
        # A monotonic time no request may outlast (a scrape's time budget); None: no budget.
        self.deadline: float | None = None
        self._connections = connections
        # TLS trust and proxies as exporter.transport documents them; never .netrc credentials
        if connections is not None:
            self.session = transport.configure(connections.session, config.ca_file)
            self._sockets = connections.tracker
        else:
            self.session = transport.configure(session or requests.Session(), config.ca_file)
            self._sockets = transport.track_sockets(self.session)
        self._own_watchdog = watchdog is None
        self._watchdog = watchdog or Watchdog(name="deadline-client")
        self._secrets: set[str] = {config.password}  # and each token this client is given
        self._proxies: dict[str, dict[str, str]] = {}  # by origin: they depend on nothing else
        # the session's defaults (Accept-Encoding, Connection) and ours, merged once
        self._headers = {**self.session.headers, "User-Agent": config.user_agent,
                         "Accept": "application/json"}

    def close(self) -> None:
        if self._connections is not None:
            self._connections.release()
        else:
            self.session.close()
        if self._own_watchdog:
            self._watchdog.close()

    def __enter__(self) -> PizzaClient:
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
        headers = dict(self._headers)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        if self.deadline is not None:
            left = self.deadline - started
            if left <= 0:
                raise StepFailure("timeout", "the probe's time budget ran out")
            timeout = min(timeout, left)
        timed_out = StepFailure("timeout", f"no answer within {timeout:g}s")
        with transport.hard_deadline(self._sockets, timeout, self._watchdog) as deadline_hit:
            try:
                # prepared here, not by Session.request: what it merges per request (headers,
                # the environment's settings) is merged once above, and its merging costs a
                # fifth of a journey's CPU (requests checks a typing Protocol per setting)
                prepared = requests.PreparedRequest()
                prepared.prepare(method=method, url=url, headers=headers, json=body,
                                 cookies=self.session.cookies)
                response = self.session.send(
                    prepared,
                    timeout=timeout,
                    stream=True,
                    allow_redirects=False,
                    proxies=self._proxies_for(url),
                    verify=self.session.verify,
                    cert=None,
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
        status = response.status_code
        try:
            data = json.loads(raw.decode("utf-8")) if raw else _NOT_JSON
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = _NOT_JSON
        return status, data

    def _proxies_for(self, url: str) -> dict[str, str]:
        origin = "/".join(url.split("/", 3)[:3])  # scheme://host:port
        proxies = self._proxies.get(origin)
        if proxies is None:
            proxies = self._proxies[origin] = transport.proxies_for(url)
        return proxies

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
        self._expect_ok(status, data)
        # a label value and a printed line: never a secret
        return mask_values(_parsed(parse.health_version, data, status), self._secrets)

    def login(self) -> str:
        """``PUT /api/auth``: a bearer token for the configured user."""
        status, data = self._request(
            "PUT",
            self._service("/api/auth"),
            timeout=self.config.timeout,
            body={"email": self.config.email, "password": self.config.password},
        )
        self._expect_ok(status, data, auth_statuses=(401, 403, 404))
        token = _parsed(parse.login_token, data, status)
        self._secrets.add(token)
        return token

    def cheapest_menu_item(self, token: str) -> parse.MenuItem:
        status, data = self._request(
            "GET", self._service("/api/order/menu"), timeout=self.config.timeout, token=token
        )
        self._expect_ok(status, data)
        return _parsed(parse.cheapest_menu_item, data, status)

    def first_store(self, token: str) -> parse.Store:
        status, data = self._request(
            "GET", self._service("/api/franchise"), timeout=self.config.timeout, token=token
        )
        self._expect_ok(status, data)
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
        if link is not None:  # its key and fix code are secrets too, wherever else they stand
            self._secrets.update(secret_parts(link.reveal()))
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
        raise self._status_failure(status, data, link=link)

    def docs_factory(self) -> str | None:
        """``GET /api/docs``: the factory URL the service names (``config.factory``); None if it
        does not say (a 404 from an older fork, or no such field)."""
        status, data = self._request("GET", self._service("/api/docs"), timeout=self.config.timeout)
        if status == 404:
            return None
        self._expect_ok(status, data)
        named = _parsed(parse.docs_factory, data, status)
        if named is not None and mask_values(named, self._secrets) != named:
            # it would show in once, the logs and pizza_probe_target_info: refused, unquoted
            raise StepFailure("bad_response", "the factory URL the service names holds a secret "
                              "of the probe", status=status)
        return named

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
        self._expect_ok(status, data)
        if not _parsed(parse.verify_valid, data, status):
            raise StepFailure("bad_jwt", "factory did not call the pizza JWT valid", status=status)

    def logout(self, token: str) -> None:
        """``DELETE /api/auth``, the only DELETE the probe ever sends."""
        status, data = self._request(
            "DELETE", self._service("/api/auth"), timeout=self.config.timeout, token=token
        )
        self._expect_ok(status, data)
        _parsed(parse.logout_ok, data, status)

    # --- failures: the service's own words, with every secret of this client taken out -----

    def _expect_ok(self, status: int, data: Any,
                   auth_statuses: tuple[int, ...] = (401, 403)) -> None:
        if status == 200 and data is _NOT_JSON:
            raise StepFailure("bad_response", "body is not JSON", status=status)
        if status != 200:
            raise self._status_failure(status, data, auth_statuses=auth_statuses)

    def _status_failure(self, status: int, data: Any, *,
                        auth_statuses: tuple[int, ...] = (401, 403),
                        link: RecoveryLink | None = None) -> StepFailure:
        # A service may quote what it was sent (the password on a refused login, the token on
        # a failed logout): redacted by value before anything can print it.
        message = parse.message(data, self._secrets) if data is not _NOT_JSON else ""
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
    """A transport failure's reason and detail, decided by the types of the exceptions behind
    it (requests wraps urllib3 wraps the socket's), never by their text."""
    if isinstance(exc, requests.Timeout):
        return StepFailure("timeout", f"no answer within {timeout:g}s")
    tls = transport.tls_failure(exc)
    if tls is not None:
        return StepFailure("tls_error", tls)
    causes = list(transport.causes(exc))
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):  # the answer began
        if any(isinstance(c, (urllib3.exceptions.IncompleteRead, http.client.IncompleteRead))
               for c in causes):
            return StepFailure("bad_response", "body truncated")
        return StepFailure("connection_error", "connection broken while reading the body")
    for kinds, description in _CONNECTION_FAILURES:
        if any(isinstance(c, kinds) for c in causes):
            return StepFailure("connection_error", description)
    return StepFailure("connection_error", "connection failed")


# The first type found behind a failure names it; the order matters (a refused connection is
# also a ConnectionError, a name that does not resolve also an OSError).
_CONNECTION_FAILURES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    ((socket.gaierror, urllib3.exceptions.NameResolutionError), "host name did not resolve"),
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset by peer"),
    (http.client.RemoteDisconnected, "server closed the connection without an answer"),
    ((ConnectionAbortedError, BrokenPipeError, urllib3.exceptions.ProtocolError),
     "connection aborted"),
)
