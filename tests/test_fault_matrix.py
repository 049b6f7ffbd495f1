"""The fault matrix: each network and protocol fault from a real loopback server, end to end.

A :class:`FaultServer` sits in front of a real simulator as a small reverse proxy: it forwards
every request to the simulator except the faulted ``(method, path)``, which it answers badly
(refuses, resets, hangs, drips, floods, redirects, rate-limits, crashes). For every fault:

- ``run_journey`` returns within the faulted step's timeout (plus a small margin), failed at the
  documented step with the documented reason and detail;
- for a representative subset, the real probe loop (``start_exporter``) runs in-process while
  the fault holds: every ``/metrics`` scrape answers within 1 s, three failures are counted, and
  consecutive journeys start no further apart than interval + timeout + 1 s.

Only loopback addresses are used. The DNS case never sends a DNS query: ``socket.getaddrinfo``
is replaced for the test. Every server is closed in teardown; every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import urlsplit

import pytest
import requests

from exporter.config import ProbeConfig
from exporter.journey import run_journey
from exporter.result import REASONS, STEPS, JourneyResult
from exporter.runtime import start_exporter

from conftest import http_get, poll, samples, value

TIMEOUT = 1.0  # each step but the order
ORDER_TIMEOUT = 2.0
DRIP_TIMEOUT = 1.5  # over the 1 s drip, so requests' per-read timeout never trips: the deadline must
MARGIN = 1.0  # the journey's other steps, against the local simulator, plus scheduling noise
CAP = 1 << 20
HUGE = 20 * 1024 * 1024
INTERVAL = 0.5
STACK = "at Layer.handle [as handle_request] (/usr/src/app/node_modules/express/lib/router/layer.js:95:5)"

# The journey's requests, by step: (method, path) and whether it goes to the factory.
ROUTES = {
    "health": ("GET", "/"),
    "login": ("PUT", "/api/auth"),
    "menu": ("GET", "/api/order/menu"),
    "franchises": ("GET", "/api/franchise"),
    "order": ("POST", "/api/order"),
    "verify": ("POST", "/api/order/verify"),
    "logout": ("DELETE", "/api/auth"),
}


# --- raw HTTP answers ----------------------------------------------------------------------------


def http_head(status: int, *, content_type: str = "application/json; charset=utf-8",
              length: int | None = None, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{key}: {val}" for key, val in headers]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_answer(status: int, body: bytes, **kwargs) -> bytes:
    return http_head(status, length=len(body), **kwargs) + body


Fault = Callable[[socket.socket, "FaultServer"], None]


def answer(status: int, body: bytes | str | object, **kwargs) -> Fault:
    """A complete answer: ``body`` as bytes, as text, or (default) as JSON."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    whole = http_answer(status, data, **kwargs)

    def fault(conn: socket.socket, server: FaultServer) -> None:
        conn.sendall(whole)

    return fault


def never_answer(conn: socket.socket, server: FaultServer) -> None:
    """Accept, read the request, say nothing until the test ends (at most 10 s)."""
    server.stopping.wait(10)


def drip(data: bytes, *, prefix: bytes = b"", limit: int = 6) -> Fault:
    """Send ``prefix`` at once, then ``data`` one byte a second; give up (close) after ``limit``
    bytes, so that a probe without a step deadline fails the test in seconds, not minutes."""

    def fault(conn: socket.socket, server: FaultServer) -> None:
        conn.sendall(prefix)
        for i in range(min(limit, len(data))):
            conn.sendall(data[i:i + 1])
            server.count("dripped")
            if server.stopping.wait(1.0):
                return

    return fault


def _partial_menu() -> tuple[bytes, bytes]:
    body = json.dumps([{"id": i, "title": "Veggie", "price": 0.0038} for i in range(200)]).encode()
    return http_head(200, length=len(body)), body


def reset_mid_body(conn: socket.socket, server: FaultServer) -> None:
    """Headers with a Content-Length, half the body, then an RST (SO_LINGER 0)."""
    head, body = _partial_menu()
    conn.sendall(head + body[: len(body) // 2])
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def truncated_mid_body(conn: socket.socket, server: FaultServer) -> None:
    """Headers with a Content-Length, half the body, then an orderly close (FIN)."""
    head, body = _partial_menu()
    conn.sendall(head + body[: len(body) // 2])
    conn.shutdown(socket.SHUT_WR)


def huge_body(*, chunked: bool) -> Fault:
    """A 20 MB JSON body, announced by Content-Length or sent chunked; counts what got out."""

    def fault(conn: socket.socket, server: FaultServer) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        if chunked:
            conn.sendall(http_head(200, headers=(("Transfer-Encoding", "chunked"),)))
        else:
            conn.sendall(http_head(200, length=HUGE))
        piece = b" " * (64 * 1024)
        sent = 0
        try:
            while sent < HUGE:
                frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
                conn.sendall(frame)
                sent += len(piece)
                server.count("body_bytes", len(piece))
            if chunked:
                conn.sendall(b"0\r\n\r\n")
            server.count("huge_body_completed")
        finally:
            server.count("huge_body_ended")

    return fault


# --- the fault server ----------------------------------------------------------------------------


class FaultServer:
    """A threaded raw-socket HTTP/1.1 server on a loopback address. Requests matching a fault's
    ``(method, path)`` get the fault; the rest are forwarded to ``upstream`` (one request per
    connection, ``Connection: close``), or get ``default`` when there is no upstream."""

    def __init__(self, faults: dict[tuple[str, str], Fault] | None = None, *,
                 upstream: str | None = None, default: Fault | None = None,
                 host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.faults = dict(faults or {})
        self.upstream = urlsplit(upstream) if upstream else None
        self.default = default or answer(404, {"message": "unknown endpoint"})
        self.tls = tls
        self.stopping = threading.Event()
        self.seen: list[tuple[str, str]] = []
        self.counters: dict[str, int] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.host, self.port = self.listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept_loop, name="fault-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + by

    def get(self, name: str) -> int:
        with self._lock:
            return self.counters.get(name, 0)

    def reset(self) -> None:
        with self._lock:
            self.counters.clear()
            self.seen.clear()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return
            self.count("connections")
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), name="fault-conn",
                             daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)  # no handler outlives a stuck peer by long
        try:
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.errors.append(repr(exc))
                    return
                self.count("tls_handshakes_completed")
            request = _read_request(conn)
            if request is None:
                return
            method, path, headers, body = request
            with self._lock:
                self.seen.append((method, path))
            fault = self.faults.get((method, path))
            if fault is not None:
                fault(conn, self)
            elif self.upstream is not None:
                self._forward(conn, method, path, headers, body)
            else:
                self.default(conn, self)
        except OSError:
            pass  # the client went away, or the deadline cut it: part of the fault
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _forward(self, conn: socket.socket, method: str, path: str, headers: dict, body: bytes) -> None:
        upstream = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=10)
        try:
            keep = {k: v for k, v in headers.items()
                    if k in ("content-type", "authorization", "user-agent", "accept")}
            upstream.request(method, path, body=body or None, headers=keep)
            response = upstream.getresponse()
            data = response.read()
            conn.sendall(http_head(response.status, length=len(data),
                                   content_type=response.getheader("Content-Type", "text/plain"))
                         + data)
        finally:
            upstream.close()

    def close(self) -> None:
        self.stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass
        self._thread.join(timeout=1)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass


def _read_request(conn: socket.socket) -> tuple[str, str, dict, bytes] | None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk or len(buf) > 65536:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        key, _, val = line.partition(":")
        headers[key.strip().lower()] = val.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return method, urlsplit(target).path, headers, rest[:length]


# --- the lab: a simulator, fault servers, configs; all closed at the end --------------------------


class Lab:
    def __init__(self, make_simulator, tmp_path, monkeypatch) -> None:
        self._make_simulator = make_simulator
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self._sim = None
        self.servers: list[FaultServer] = []
        self.holders: list[socket.socket] = []
        self.resolved: list[str] = []  # host names the fake resolver was asked for
        self.fault_server: FaultServer | None = None  # the server of the case under test
        self.other_host: FaultServer | None = None  # the redirect target on 127.0.0.2

    @property
    def sim(self):
        if self._sim is None:
            self._sim = self._make_simulator()
        return self._sim

    def server(self, faults=None, **kwargs) -> FaultServer:
        server = FaultServer(faults, **kwargs)
        self.servers.append(server)
        return server

    def proxy(self, step: str, fault: Fault) -> ProbeConfig:
        """A config whose ``step`` meets ``fault``; every other request reaches the simulator."""
        route = {ROUTES[step]: fault}
        if step == "verify":
            factory = self.server(route, upstream=self.sim.factory_url)
            self.fault_server = factory
            return self.config(self.sim.service_url, factory.url)
        service = self.server(route, upstream=self.sim.service_url)
        self.fault_server = service
        return self.config(service.url)

    def config(self, service_url: str, factory_url: str | None = None, **kwargs) -> ProbeConfig:
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("order_timeout", ORDER_TIMEOUT)
        return ProbeConfig(service_url=service_url, factory_url=factory_url or self.sim.factory_url,
                           **kwargs)

    def refused_port(self) -> int:
        """A port that is bound but never listens: connecting to it is refused, without races."""
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.bind(("127.0.0.1", 0))
        self.holders.append(holder)
        return holder.getsockname()[1]

    def self_signed(self) -> tuple[str, str]:
        cert, key = self.tmp_path / "cert.pem", self.tmp_path / "key.pem"
        if not cert.exists():
            make_self_signed(str(cert), str(key))
        return str(cert), str(key)

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for holder in self.holders:
            holder.close()


def make_self_signed(cert: str, key: str) -> None:
    """A self-signed certificate for 127.0.0.1 and localhost: with ``cryptography`` when it is
    installed, else with the ``openssl`` command."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-days", "1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", key, "-out", cert],
            check=True, capture_output=True, timeout=60,
        )
        return
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .sign(private, hashes.SHA256())
    )
    with open(cert, "wb") as handle:
        handle.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key, "wb") as handle:
        handle.write(private.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))


@pytest.fixture
def lab(make_simulator, tmp_path, monkeypatch):
    lab = Lab(make_simulator, tmp_path, monkeypatch)
    yield lab
    lab.close()


# --- the cases -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    step: str
    reason: str
    detail: str
    build: Callable[[Lab], ProbeConfig]
    hangs: bool = False  # the failed step lasts its whole timeout
    check: Callable[[Lab, JourneyResult], None] | None = None

    def budget(self, config: ProbeConfig) -> float:
        """The faulted step's timeout: the journey must end within it plus MARGIN."""
        return config.order_timeout if self.step == "order" else config.timeout


def _refused(lab: Lab) -> ProbeConfig:
    return lab.config(f"http://127.0.0.1:{lab.refused_port()}")


def _dns(lab: Lab) -> ProbeConfig:
    real = socket.getaddrinfo

    def fake_getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        lab.resolved.append(name)
        if name == "localhost" or name.startswith("127."):
            return real(host, *args, **kwargs)
        # everything else would need a DNS server: answer NXDOMAIN without asking one
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    lab.monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    return lab.config("http://pizza.invalid:3000")


def _check_dns(lab: Lab, result: JourneyResult) -> None:
    assert "pizza.invalid" in lab.resolved  # the name was looked up, by the fake, not by DNS


def _tls(lab: Lab) -> ProbeConfig:
    cert, key = lab.self_signed()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = lab.server(upstream=lab.sim.service_url, tls=context)
    lab.fault_server = server
    return lab.config(server.url)


def _check_tls(lab: Lab, result: JourneyResult) -> None:
    server = lab.fault_server
    poll(lambda: server.errors, timeout=2, what="the server to see the failed handshake")
    assert server.get("connections") >= 1
    assert server.get("tls_handshakes_completed") == 0  # the client refused the certificate
    assert server.seen == []  # no request was ever sent over it


def _check_dripped(lab: Lab, result: JourneyResult) -> None:
    # bytes kept coming a second apart, so only the step's deadline could end the step
    assert lab.fault_server.get("dripped") >= 2


def _check_huge(lab: Lab, result: JourneyResult) -> None:
    server = lab.fault_server
    step = next(s for s in result.steps if s.name == "menu")
    assert step.duration < 0.5
    # the client gave up at the cap: the server could not push the 20 MB through
    poll(lambda: server.get("huge_body_ended"), timeout=5, what="the server to stop sending")
    assert server.get("body_bytes") <= CAP + 4 * 1024 * 1024  # the cap plus socket buffers
    assert server.get("huge_body_completed") == 0


def _redirect(step: str) -> Callable[[Lab], ProbeConfig]:
    def build(lab: Lab) -> ProbeConfig:
        other = lab.server(host="127.0.0.2", default=answer(200, {"message": "elsewhere"}))
        # the counter works: a direct request is seen...
        assert requests.get(other.url + "/", timeout=2).status_code == 200
        assert other.get("connections") == 1
        other.reset()
        lab.other_host = other
        method, path = ROUTES[step]
        return lab.proxy(step, answer(
            302, f"Found. Redirecting to {other.url}{path}", content_type="text/plain; charset=utf-8",
            headers=(("Location", f"{other.url}{path}"),)))
    return build


def _check_redirect(lab: Lab, result: JourneyResult) -> None:
    # ...and the probe's journey sent it nothing
    assert lab.other_host.get("connections") == 0 and lab.other_host.seen == []


def _check_stack(lab: Lab, result: JourneyResult) -> None:
    text = json.dumps(result.to_dict())
    assert "node_modules" not in text and "layer.js" not in text and "Layer.handle" not in text
    assert all("node_modules" not in step.detail for step in result.steps)


DRIP_BODY = b'{"franchises":[{"id":1,"name":"pizzaPocket","stores":[{"id":1,"name":"SLC"}]}]}'
STACK_JSON = {"message": "Chaos monkey",
              "stack": f"Error: Chaos monkey\n    at /usr/src/app/src/routes/orderRouter.js:131:13\n    {STACK}"}
STACK_HTML = ("<!DOCTYPE html><html><head><title>Error</title></head><body><pre>Error: Chaos monkey"
              f"<br> &nbsp; &nbsp;{STACK}</pre></body></html>")

CASES = [
    Case("connection_refused", "health", "connection_error", "connection refused", _refused),
    Case("reset_mid_body", "menu", "connection_error", "connection broken while reading the body",
         lambda lab: lab.proxy("menu", reset_mid_body)),
    Case("truncated_mid_body", "menu", "bad_response", "body truncated",
         lambda lab: lab.proxy("menu", truncated_mid_body)),
    Case("dns_does_not_resolve", "health", "connection_error", "host name did not resolve", _dns,
         check=_check_dns),
    Case("tls_self_signed", "health", "tls_error",
         "certificate verify failed: self-signed certificate", _tls,
         check=_check_tls),
    Case("never_answers_menu", "menu", "timeout", f"no answer within {TIMEOUT:g}s",
         lambda lab: lab.proxy("menu", never_answer), hangs=True),
    Case("never_answers_order", "order", "timeout", f"no answer within {ORDER_TIMEOUT:g}s",
         lambda lab: lab.proxy("order", never_answer), hangs=True),
    Case("drip_headers", "health", "timeout", f"no answer within {DRIP_TIMEOUT:g}s",
         lambda lab: dataclasses.replace(
             lab.proxy("health", drip(http_answer(200, b'{"message":"welcome to JWT Pizza"}'))),
             timeout=DRIP_TIMEOUT),
         hangs=True, check=_check_dripped),
    Case("drip_body", "franchises", "timeout", f"no answer within {DRIP_TIMEOUT:g}s",
         lambda lab: dataclasses.replace(
             lab.proxy("franchises", drip(DRIP_BODY, prefix=http_head(200, length=len(DRIP_BODY)))),
             timeout=DRIP_TIMEOUT),
         hangs=True, check=_check_dripped),
    Case("huge_body_content_length", "menu", "bad_response",
         f"body of {HUGE} bytes is over the {CAP}-byte cap",
         lambda lab: lab.proxy("menu", huge_body(chunked=False)), check=_check_huge),
    Case("huge_body_chunked", "menu", "bad_response", f"body is over the {CAP}-byte cap",
         lambda lab: lab.proxy("menu", huge_body(chunked=True)), check=_check_huge),
    Case("invalid_utf8", "login", "bad_response", "body is not JSON",
         lambda lab: lab.proxy("login", answer(
             200, b'{"user": {"id": 2, "name": "pizza diner \xff\xfe"}, "token": "t\xc3\x28k"}'))),
    Case("redirect_other_host_health", "health", "http_error",
         "HTTP 302 (redirects are not followed)", _redirect("health"), check=_check_redirect),
    Case("redirect_other_host_order", "order", "http_error",
         "HTTP 302 (redirects are not followed)", _redirect("order"), check=_check_redirect),
    Case("rate_limited_429_retry_after", "login", "http_error", "HTTP 429",
         lambda lab: lab.proxy("login", answer(
             429, "Too many requests, please try again later.", content_type="text/html; charset=utf-8",
             headers=(("Retry-After", "120"),)))),
    Case("service_500_stack_json", "order", "http_error", "HTTP 500: Chaos monkey",
         lambda lab: lab.proxy("order", answer(500, STACK_JSON)), check=_check_stack),
    Case("service_500_stack_html", "order", "http_error", "HTTP 500",
         lambda lab: lab.proxy("order", answer(500, STACK_HTML, content_type="text/html; charset=utf-8")),
         check=_check_stack),
]

# JSON that parses but has the wrong shape, at every step. For health only a non-object is a bad
# shape: an object without a version is a fork that does not say (parse.health_version).
WRONG_SHAPES = {
    "health": (["welcome to JWT Pizza"], "health answer is not a JSON object"),
    "login": ({"user": {"id": 2}, "token": 42}, "login answer has no token"),
    "menu": ({"menu": [{"id": 1, "price": 0.0038}]}, "menu is not a JSON list"),
    "franchises": ({"franchises": "pizzaPocket"}, "franchise answer is neither a list nor {franchises: [...]}"),
    "order": ({"order": {"franchiseId": 1}, "jwt": "a.b.c"}, "order answer has no order id"),
    "verify": (["valid"], "verify answer is not a JSON object"),
    "logout": (["logout successful"], "logout answer is not a JSON object"),
}


def _wrong_shape(step: str) -> Case:
    body, detail = WRONG_SHAPES[step]
    return Case(f"wrong_shape_{step}", step, "bad_response", detail,
                lambda lab: lab.proxy(step, answer(200, body)))


SHAPE_CASES = [pytest.param(_wrong_shape(step), id=f"wrong_shape_{step}") for step in STEPS]
BY_NAME = {case.name: case for case in CASES}


def assert_classified(case: Case, config: ProbeConfig, result: JourneyResult, wall: float) -> None:
    budget = case.budget(config)
    assert case.reason in REASONS
    assert (result.success, result.failed_step, result.reason, result.detail) == (
        False, case.step, case.reason, case.detail), result.to_dict()
    assert wall <= budget + MARGIN and result.duration <= budget + MARGIN, (wall, budget)
    failed = next(s for s in result.steps if not s.ok)
    assert (failed.name, failed.reason, failed.detail) == (case.step, case.reason, case.detail)
    assert failed.duration <= budget + 0.5
    if case.hangs:
        assert failed.duration >= budget - 0.05  # it really waited, and only that long
    # the steps before it succeeded; after it only logout ran, and only once logged in
    names = [s.name for s in result.steps]
    assert names[: names.index(case.step)] == list(STEPS[: STEPS.index(case.step)])
    after = names[names.index(case.step) + 1:]
    logged_in = STEPS.index(case.step) > STEPS.index("login")
    assert after == (["logout"] if logged_in and case.step != "logout" else [])


# --- one journey per fault -----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_fault_is_classified_within_its_timeout(lab, case):
    config = case.build(lab)
    started = time.monotonic()
    result = run_journey(config)
    wall = time.monotonic() - started
    assert_classified(case, config, result, wall)
    if case.check:
        case.check(lab, result)


@pytest.mark.parametrize("case", SHAPE_CASES)
def test_json_of_the_wrong_shape_at_every_step(lab, case):
    config = case.build(lab)
    started = time.monotonic()
    result = run_journey(config)
    wall = time.monotonic() - started
    assert_classified(case, config, result, wall)
    assert result.status == 200


def test_through_the_proxy_without_a_fault_the_journey_succeeds(lab):
    """The control: the fault server itself is transparent, so each failure above is the fault's."""
    service = lab.server(upstream=lab.sim.service_url)
    factory = lab.server(upstream=lab.sim.factory_url)
    result = run_journey(lab.config(service.url, factory.url))
    assert result.success, result.to_dict()
    assert [s.name for s in result.steps] == list(STEPS)
    assert service.seen == [ROUTES[s] for s in STEPS if s != "verify"]
    assert factory.seen == [ROUTES["verify"]]


def test_health_object_without_a_version_is_not_a_bad_shape(lab):
    config = lab.proxy("health", answer(200, {"message": "welcome to JWT Pizza"}))
    result = run_journey(config)
    assert result.success, result.to_dict()
    assert result.target_version == "unknown"


# --- the real loop: /metrics keeps answering, the next journey runs on time ------------------------


LOOP_CASES = ["never_answers_menu", "drip_headers", "huge_body_chunked", "huge_body_content_length",
              "rate_limited_429_retry_after", "connection_refused", "reset_mid_body",
              "tls_self_signed", "service_500_stack_json"]


@pytest.mark.parametrize("name", LOOP_CASES)
def test_loop_keeps_scraping_and_probing_on_time(lab, name):
    case = BY_NAME[name]
    config = case.build(lab)
    budget = case.budget(config)
    journeys: list[JourneyResult] = []
    scrapes: list[float] = []
    errors: list[str] = []
    last_runs: list[float] = []
    exporter = start_exporter(config, interval=INTERVAL, listen=("127.0.0.1", 0),
                              observers=[journeys.append])
    try:
        url = exporter.server.url("/metrics")

        def scrape() -> bool:
            started = time.monotonic()
            try:
                status, text = http_get(url, timeout=1)
            except Exception as exc:  # noqa: BLE001 (recorded, not retried away: every scrape must answer)
                errors.append(repr(exc))
                return False
            scrapes.append(time.monotonic() - started)
            if status != 200:
                errors.append(f"status {status}")
                return False
            last_run = value(text, "pizza_probe_last_run_timestamp_seconds")
            if last_run and (not last_runs or last_run != last_runs[-1]):
                last_runs.append(last_run)
            return (value(text, "pizza_probe_orders_total", result="failure") or 0) >= 3

        poll(scrape, timeout=3 * (INTERVAL + budget + 1) + 5, interval=0.05,
             what="three failed journeys counted")
        text = http_get(url, timeout=1)[1]
    finally:
        exporter.stop()

    assert errors == [] and len(scrapes) >= 3
    assert max(scrapes) < 1.0, f"slowest scrape {max(scrapes):.3f}s"
    failures = value(text, "pizza_probe_orders_total", result="failure")
    assert failures >= 3 and value(text, "pizza_probe_orders_total", result="success") == 0
    assert value(text, "pizza_probe_failures_total", step=case.step, reason=case.reason) == failures
    assert [key for key in samples(text) if key[0] == "pizza_probe_failures_total"] == [
        ("pizza_probe_failures_total", (("reason", case.reason), ("step", case.step)))]
    assert value(text, "pizza_probe_consecutive_failures") == failures

    # every journey was classified the same way, and each ended within its timeout
    done = list(journeys)[:3]
    assert [(r.failed_step, r.reason, r.detail) for r in done] == [(case.step, case.reason, case.detail)] * 3
    assert all(r.duration <= budget + MARGIN for r in done)
    # the gauge advanced with each journey, and journeys started on time (no Retry-After wait)
    assert len(last_runs) >= 3 and last_runs == sorted(last_runs)
    assert set(last_runs) <= {r.started_at for r in journeys}
    starts = [r.started_at for r in done]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap <= INTERVAL + budget + 1 for gap in gaps), gaps
    gauge_gaps = [b - a for a, b in itertools.pairwise(last_runs)]
    assert all(gap <= INTERVAL + budget + 1 for gap in gauge_gaps), gauge_gaps
