"""The HTTP server under many idle clients (issue 13, item 3): idle connections cost a file
descriptor, not a thread; they are closed after the idle timeout; a full server still answers
``/metrics`` and ``/healthz``. Real sockets on 127.0.0.1; real processes where it is the
product's behaviour that is claimed."""

from __future__ import annotations

import os
import resource
import socket
import threading
import time

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.httpserver import BackgroundServer, QuietHandler
from exporter.web import make_handler

from conftest import poll, target_args

# Threads a server may add for 400 idle clients: a dispatcher and the few workers the test's
# sequential requests need (the old server started one thread per connection: 400).
THREAD_GROWTH_BOUND = 10


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _request(port: int, path: str, *, keep: socket.socket | None = None,
             timeout: float = 5.0) -> tuple[socket.socket, bytes]:
    """One GET over a raw socket (``keep``: an open one); the socket and the whole answer."""
    sock = keep or socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
    return sock, _read_answer(sock)


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    for _ in range(10_000):  # each recv either adds bytes or ends the loop
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(body) >= length:
                return data
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError(f"closed after {len(data)} bytes")
        data += piece
    raise AssertionError("an answer that never ends")


def _open_idle(port: int, silent: int, after_request: int, path: str = "/healthz"):
    """``silent`` connections that never send a byte, ``after_request`` keep-alive ones idle
    after one answered request."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(silent)]
    for _ in range(after_request):
        sock, answer = _request(port, path)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        socks.append(sock)
    return socks


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (the client sees the end), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def _timed_get(url: str, timeout: float = 5.0) -> float:
    started = time.monotonic()
    answer = requests.get(url, timeout=timeout)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    return elapsed


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.fixture
def sockets():
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


# --- the product, as real processes -----------------------------------------------------------

def test_400_idle_clients_cost_the_exporter_no_threads(simulator, processes, sockets):
    exporter = processes.start("serve", *target_args(simulator), "--interval", "1m")
    pid = exporter.proc.pid
    port = int(exporter.url.rsplit(":", 1)[1])
    _timed_get(exporter.url + "/metrics")
    before = _threads(pid)

    sockets += _open_idle(port, silent=200, after_request=200)
    poll(lambda: exporter.proc.poll() is None, what="the exporter to be alive")
    latencies = [_timed_get(exporter.url + "/metrics") for _ in range(5)]
    after = _threads(pid)

    assert max(latencies) < 1.0, f"/metrics took {max(latencies):.2f}s with 400 idle clients"
    assert after - before <= THREAD_GROWTH_BOUND, \
        f"400 idle clients took the exporter from {before} to {after} threads"
    # the keep-alive ones still work: idle is not dead
    _, answer = _request(port, "/healthz", keep=sockets[-1])
    assert answer.endswith(b"ok\n")


def test_a_flood_of_2000_idle_connections_leaves_the_sidecar_healthy(simulator, processes,
                                                                     sockets):
    _raise_fd_limit(2000 + 500)
    sidecar = processes.start("sidecar", *target_args(simulator))
    pid = sidecar.proc.pid
    port = int(sidecar.url.rsplit(":", 1)[1])
    _timed_get(sidecar.url + "/healthz")
    before = _threads(pid)

    for _ in range(2000):
        sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    latencies = [_timed_get(sidecar.url + "/healthz", timeout=5) for _ in range(5)]
    after = _threads(pid)

    assert max(latencies) < 1.0, f"/healthz took {max(latencies):.2f}s under 2000 idle clients"
    assert after - before <= THREAD_GROWTH_BOUND, f"{before} -> {after} threads"
    # beyond the cap (1000 here) the idle the longest made room: the first ones were closed
    poll(lambda: _closed_by_server(sockets[0]), timeout=5, what="the oldest idle one closed")
    assert not _closed_by_server(sockets[-1])


# --- the server itself, in process: timeouts, caps and reserved workers ------------------------

def _exporter_server(**options) -> BackgroundServer:
    return BackgroundServer("127.0.0.1", 0, make_handler(CollectorRegistry()), **options)


def test_idle_connections_are_closed_after_the_idle_timeout(sockets):
    server = _exporter_server(idle_timeout=3.0).start()
    try:
        base = threading.active_count()
        sockets += _open_idle(server.port, silent=200, after_request=200, path="/metrics")
        assert threading.active_count() - base <= THREAD_GROWTH_BOUND
        # idle is not dead: a keep-alive client may ask again before the timeout
        _, answer = _request(server.port, "/healthz", keep=sockets[-1])
        assert answer.endswith(b"ok\n")
        last_used = time.monotonic()

        poll(lambda: _closed_by_server(sockets[-1]), timeout=15,
             what="the last used connection to be closed by the server")
        assert time.monotonic() - last_used >= 3.0 - 0.1, "closed before its idle timeout"
        poll(lambda: all(_closed_by_server(sock) for sock in sockets), timeout=5,
             what="every idle connection to be closed by the server")
        poll(lambda: server.engine.open_connections == 0, timeout=5, what="no open connection")
        assert _timed_get(server.url("/metrics")) < 1.0
    finally:
        server.stop()


def test_a_head_dripped_slower_than_the_idle_timeout_is_cut_off(sockets):
    server = _exporter_server(idle_timeout=0.5).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sockets.append(sock)
        started = time.monotonic()
        closed = False
        for byte in b"GET /metrics HTTP/1.1\r\nHost: probe\r\n":  # never the blank line
            try:
                sock.sendall(bytes([byte]))
            except ConnectionError:
                closed = True
                break
            if _closed_by_server(sock):
                closed = True
                break
            sock.setblocking(True)
            time.sleep(0.1)
            if time.monotonic() - started > 5:
                break
        assert closed, "a client dripping its head kept its connection for 5 s"
        assert time.monotonic() - started < 2.0
    finally:
        server.stop()


def test_beyond_max_connections_the_idle_longest_makes_room(sockets):
    server = _exporter_server(max_connections=50).start()
    try:
        sockets += _open_idle(server.port, silent=60, after_request=0)
        poll(lambda: all(_closed_by_server(sock) for sock in sockets[:10]), timeout=5,
             what="the ten oldest to be closed")
        assert not any(_closed_by_server(sock) for sock in sockets[10:])
        assert _timed_get(server.url("/healthz")) < 1.0
        assert server.engine.open_connections <= 50
    finally:
        server.stop()


class _Slow(QuietHandler):
    release = threading.Event()
    started = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        if self.path == "/slow":
            with self.lock:
                type(self).started += 1
            self.release.wait(20)
            self.send_body(200, b"slow\n", "text/plain")
        else:
            self.send_standard_page(self.path, CollectorRegistry(), lambda: b"page")


def test_long_requests_on_every_worker_do_not_starve_metrics():
    _Slow.release.clear()
    _Slow.started = 0
    server = BackgroundServer("127.0.0.1", 0, _Slow, workers=4, reserved_workers=1).start()
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(
        requests.get(server.url("/slow"), timeout=30).status_code), daemon=True)
        for _ in range(6)]
    try:
        for thread in threads:
            thread.start()
        poll(lambda: _Slow.started == 4, what="four long requests on the four workers")
        for _ in range(3):
            assert _timed_get(server.url("/metrics")) < 1.0
            assert _timed_get(server.url("/healthz")) < 1.0
        assert _Slow.started == 4, "the two other long requests wait for a worker"
        assert server.engine.pool.threads == 5
        _Slow.release.set()
        for thread in threads:
            thread.join(timeout=10)
        assert answers == [200] * 6
    finally:
        _Slow.release.set()
        server.stop()


def test_a_server_full_of_waiting_requests_sheds_one_for_a_health_check():
    _Slow.release.clear()
    _Slow.started = 0
    server = BackgroundServer("127.0.0.1", 0, _Slow, workers=1, reserved_workers=1,
                              max_connections=4).start()
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(
        requests.get(server.url("/slow"), timeout=30).status_code), daemon=True)
        for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        poll(lambda: _Slow.started == 1 and server.engine.open_connections == 4,
             what="one long request on the one worker, three waiting: four connections")
        # no connection is idle: the request queued last is refused with a 503 to make room
        assert _timed_get(server.url("/healthz")) < 1.0
        poll(lambda: answers == [503], what="one waiting request refused")
        _Slow.release.set()
        for thread in threads:
            thread.join(timeout=10)
        assert sorted(answers) == [200, 200, 200, 503]
    finally:
        _Slow.release.set()
        server.stop()


class _Echo(QuietHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_body(200, body[::-1], "text/plain")

    def do_GET(self) -> None:
        self.send_body(200, self.path.encode(), "text/plain")

    do_HEAD = do_GET


def test_keep_alive_pipelining_bodies_and_head_survive_the_hand_offs(sockets):
    server = BackgroundServer("127.0.0.1", 0, _Echo).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sockets.append(sock)
        body = b"x" * 100_000 + b"end"
        # three requests in one write: a body bigger than any buffer, then two pipelined GETs
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body + b"GET /one HTTP/1.1\r\nHost: p\r\n\r\n"
                     + b"HEAD /two HTTP/1.1\r\nHost: p\r\n\r\n")
        data = b""
        for _ in range(10_000):  # until three answers are in, the last one a HEAD's
            if data.count(b"HTTP/1.1 200 OK") == 3 and data.endswith(b"\r\n\r\n"):
                break
            piece = sock.recv(65536)
            assert piece, f"closed after {len(data)} bytes"
            data += piece
        post, get, head = data.split(b"HTTP/1.1 200 OK")[1:]
        assert post.endswith(b"dne" + b"x" * 100_000)
        assert get.endswith(b"\r\n\r\n/one")
        assert b"Content-Length: 4" in head and head.endswith(b"\r\n\r\n")  # HEAD: no body
        _, again = _request(server.port, "/three", keep=sock)
        assert again.endswith(b"/three")
        session = requests.Session()
        assert [session.get(server.url(f"/{n}"), timeout=5).text for n in range(5)] == \
            [f"/{n}" for n in range(5)]
    finally:
        server.stop()


def test_stop_is_quick_with_idle_and_busy_connections(sockets):
    _Slow.release.clear()
    _Slow.started = 0
    server = BackgroundServer("127.0.0.1", 0, _Slow).start()
    sockets += _open_idle(server.port, silent=50, after_request=50)
    busy = threading.Thread(target=lambda: requests.get(server.url("/slow"), timeout=30),
                            daemon=True)
    busy.start()
    try:
        poll(lambda: _Slow.started >= 1, what="a long request in progress")
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
        poll(lambda: all(_closed_by_server(sock) for sock in sockets), timeout=5,
             what="the idle connections closed at stop")
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url("/healthz"), timeout=2)
    finally:
        _Slow.release.set()


def test_tls_connections_idle_or_stalled_in_the_handshake_hold_no_worker(sockets):
    from exporter.simulator import Simulator, SimulatorOptions

    sim = Simulator(SimulatorOptions(factory_tls=True)).start(("127.0.0.1", 0), ("127.0.0.1", 0))
    try:
        port = int(sim.factory_url.rsplit(":", 1)[1])
        base = threading.active_count()
        for _ in range(100):  # connected, never a byte of the handshake
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        for _ in range(100):  # half a ClientHello: the handshake can only wait
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            sockets.append(sock)
        session = requests.Session()
        for _ in range(3):  # keep-alive over TLS across the hand-offs
            started = time.monotonic()
            answer = session.get(sim.factory_url + "/api/vendor", timeout=5, verify=sim.ca_file)
            assert time.monotonic() - started < 1.0
            assert answer.status_code < 500, answer.text
        assert threading.active_count() - base <= THREAD_GROWTH_BOUND
    finally:
        sim.stop()


# --- a hostile client (the second review's attacks) ----------------------------------------------

class _Pages(QuietHandler):
    """/metrics and /healthz as the exporter's are (quick paths), and a POST that reads its body."""

    quick_paths = ("/metrics", "/healthz", "/")

    def do_GET(self) -> None:
        self.send_body(200, b"ok " + self.path.encode(), "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_body(200, b"got %d" % len(body), "text/plain")


def test_a_health_check_goes_before_the_scrapes_queued_ahead_of_it(sockets):
    # Quick requests were served first come, first served: 200 gzip scrapes of 40 targets at
    # once queued /healthz behind them for 8 s (the image's HEALTHCHECK gives up after 5 s).
    tokens = threading.Semaphore(0)

    class SlowMetrics(QuietHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                tokens.acquire(timeout=30)  # a scrape takes as long as the test says
            self.send_body(200, b"ok " + self.path.encode(), "text/plain")

    server = BackgroundServer("127.0.0.1", 0, SlowMetrics, workers=2, reserved_workers=1).start()
    try:
        for _ in range(5):  # three held by the three workers, two queued
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            sockets.append(sock)
        poll(lambda: server.engine.pool.threads == 3, what="every worker busy")
        health = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sockets.append(health)
        health.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        poll(lambda: len(server.engine.pool._queue[True]) == 3, what="the health check queued")
        tokens.release()  # one scrape ends: its worker takes the health check, not a scrape
        assert _read_answer(health).startswith(b"HTTP/1.1 200")
    finally:
        for _ in range(10):
            tokens.release()
        server.stop()


def _slow_exposition_server() -> tuple[BackgroundServer, list[int], threading.Event]:
    """A server whose /metrics exposition blocks until ``release`` is set; ``drawn`` gets one
    entry per exposition begun."""
    drawn: list[int] = []
    release = threading.Event()

    class Slow:
        def collect(self):
            drawn.append(1)
            release.wait(30)
            return []

    registry = CollectorRegistry()
    registry.register(Slow())

    class Exposing(QuietHandler):
        def do_GET(self) -> None:
            self.send_standard_page(self.path.split("?")[0], registry, lambda: b"")

    return BackgroundServer("127.0.0.1", 0, Exposing).start(), drawn, release


def test_a_flood_of_scrapes_draws_at_most_a_few_expositions_at_once(sockets):
    # 200 gzip scrapes of 40 targets at once: 68 expositions shared the GIL, and /healthz took
    # 7-8 s to answer. Now at most EXPOSITION_SLOTS are drawn at once; the rest wait.
    from exporter.httpserver import EXPOSITION_SLOTS

    server, inside, release = _slow_exposition_server()
    try:
        for number in range(10):  # ten different ones: none can take another's answer
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: x-%d\r\n\r\n"
                         % number)
            sockets.append(sock)
        poll(lambda: len(inside) == EXPOSITION_SLOTS, what="the first expositions")
        with pytest.raises(pytest.fail.Exception):  # no more than the slots, for 2 s
            poll(lambda: len(inside) > EXPOSITION_SLOTS, timeout=2, what="more expositions")
        assert _timed_get(server.url("/healthz")) < 5
        release.set()
        for sock in sockets:
            assert _read_answer(sock).startswith(b"HTTP/1.1 200")
        assert len(inside) == 10
    finally:
        release.set()
        server.stop()


def test_identical_scrapes_asked_during_a_drawing_take_its_answer(sockets):
    # A flood of the same scrape drew the same exposition once per request: a scrape sent into
    # it waited for every one before it (8-15 s with 200 clients and 40 targets).
    server, drawn, release = _slow_exposition_server()
    try:
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
            sockets.append(sock)
        poll(lambda: server.engine.pool.threads == 10, what="ten scrapes being answered")
        release.set()
        answers = [_read_answer(sock) for sock in sockets]
        assert all(a.startswith(b"HTTP/1.1 200") and b"Content-Encoding: gzip" in a
                   for a in answers)
        assert len(drawn) < 10  # before: one drawing per scrape
        release.clear()
        drawn.clear()
        release.set()  # and a scrape after them is drawn afresh
        assert requests.get(server.url("/metrics"), timeout=5).status_code == 200
        assert len(drawn) == 1
    finally:
        release.set()
        server.stop()


def test_a_head_over_16_kib_is_answered_431_and_dripped_heads_hold_no_worker(sockets):
    server = BackgroundServer("127.0.0.1", 0, _Pages).start()
    try:
        big = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sockets.append(big)
        big.sendall(b"GET /metrics HTTP/1.1\r\nX-A: " + b"a" * 20_000)
        assert _read_answer(big).startswith(b"HTTP/1.1 431")
        # 70 heads of 15 KiB, then a byte now and then: before the fix, each such head (at 66 KiB)
        # went to a worker that waited on the drip, and every worker was held
        for path in ["/metrics"] * 4 + ["/nothing"] * 66:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(f"GET {path} HTTP/1.1\r\nX-A: ".encode() + b"a" * 15_000)
            sockets.append(sock)
        for sock in sockets[1:]:
            sock.sendall(b"a")
        assert _timed_get(server.url("/metrics")) < 1.0
        assert _timed_get(server.url("/healthz")) < 1.0
    finally:
        server.stop()


def test_a_dripped_body_or_an_unread_answer_frees_its_worker(sockets, monkeypatch):
    import exporter.httpserver as httpserver

    monkeypatch.setattr(httpserver, "BODY_DEADLINE", 0.5)
    monkeypatch.setattr(httpserver, "WRITE_TIMEOUT", 0.5)
    server = BackgroundServer("127.0.0.1", 0, _Pages, workers=4, reserved_workers=1).start()
    try:
        for _ in range(5):  # more than every worker: a body announced, one byte sent
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\nx")
            sockets.append(sock)
        for _ in range(5):  # pipelined scrapes whose answers are never read
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"p" * 2000 + b"\r\n\r\n" * 1)
            sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n" * 200)
            sockets.append(sock)
        poll(lambda: _timed_get(server.url("/healthz"), timeout=2) < 1.0, timeout=10,
             what="a worker freed by the body deadline or the write timeout")
    finally:
        server.stop()


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\r\nContent-Length: 36\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\n"
    b"abcGET /metrics HTTP/1.1\r\n\r\n",
], ids=["GET with a body", "Content-Length and chunked", "two Content-Lengths"])
def test_a_body_left_unread_is_never_taken_for_the_next_request(sockets, request_bytes):
    server = BackgroundServer("127.0.0.1", 0, _Pages).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sockets.append(sock)
        sock.sendall(request_bytes)
        data = b""
        for _ in range(1000):  # until the server closes the connection
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        assert data.count(b"HTTP/1.1 ") == 1, data  # before the fix: a second, smuggled answer
        assert b"ok /metrics" not in data
    finally:
        server.stop()


def test_a_post_with_its_whole_body_keeps_the_connection(sockets):
    server = BackgroundServer("127.0.0.1", 0, _Pages).start()
    try:
        with requests.Session() as session:
            for _ in range(5):
                assert session.post(server.url("/echo"), data=b"x" * 10, timeout=5).text == "got 10"
    finally:
        server.stop()


def test_a_handler_that_raises_is_one_line_on_stderr_never_a_traceback(capfd):
    class Broken(QuietHandler):
        def do_GET(self) -> None:
            raise RuntimeError("a bug of ours")

    server = BackgroundServer("127.0.0.1", 0, Broken).start()
    try:
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url("/x"), timeout=5)
        err = poll(lambda: capfd.readouterr().err, what="the error line")
    finally:
        server.stop()
    assert err == "pizza-probe: error handling a request: RuntimeError\n"
