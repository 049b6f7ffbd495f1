"""One HTTP server for the exporter, the sidecar and the simulator.

Idle connections cost a file descriptor, not a thread. One dispatcher thread per server owns the
listening sockets and every connection that is waiting for its client: it accepts, reads a
request's head without blocking, and hands a connection with a complete head to a bounded pool
of workers. A worker answers that one request (the stdlib's ``handle_one_request``) and gives a
keep-alive connection back, with any bytes already read past the request. Connections idle for
longer than ``idle_timeout`` are closed, and at ``max_connections`` the one idle the longest
makes room for a new one (if none is idle, the request queued last gets a 503). A few workers
are reserved for the quick pages (``quick_paths``: ``/metrics``, ``/healthz``), so long
polls, journeys and status page loads cannot starve a scrape or a health check."""

from __future__ import annotations

import collections
import concurrent.futures
import errno
import io
import re
import resource
import selectors
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from http.server import BaseHTTPRequestHandler
from typing import TypeVar, cast
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import make_wsgi_app

from .config import ConfigError

# A keep-alive connection with no request for this long is closed (nginx: 75 s, Go: none).
DEFAULT_IDLE_TIMEOUT = 30.0
# Workers for any request; the exporter runs at most 32 /probe journeys at a time.
DEFAULT_WORKERS = 64
# More workers that answer only the quick pages, whatever the others are doing.
DEFAULT_RESERVED_WORKERS = 4
# A request head must be whole within this many bytes, or the dispatcher answers 431 and closes:
# no worker ever waits on a head (a Prometheus scrape's head is well under 1 KiB).
MAX_HEAD_BYTES = 16384
# A worker reads a request's body for this long at most, and each write of its answer may
# block this long at most: a client that drips or never reads cannot hold a worker.
BODY_DEADLINE = 10.0
WRITE_TIMEOUT = 5.0
# Expositions of /metrics and /probe drawn at the same time by one server: each is pure Python
# under the GIL, and 68 at once made every answer, /healthz's too, wait for all of them.
EXPOSITION_SLOTS = 2
_READ_SIZE = 65536
_ACCEPT_BATCH = 256  # accepts per listener per turn, so a flood cannot starve the rest
_WORKER_IDLE_EXIT = 10.0  # a worker with nothing to do for this long ends
T = TypeVar("T")
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_OVERLOADED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Length: 18\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
               b"server overloaded\n")
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; "
              b"charset=utf-8\r\nContent-Length: 25\r\nConnection: close\r\n\r\n"
              b"request head is too large")
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def default_max_connections() -> int:
    """Open connections per server: 1000, or a quarter of the file descriptor limit if lower
    (the process needs the rest for its own requests)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1000
    return min(1000, max(64, soft // 4))


class _Server(socketserver.TCPServer):
    """The listening socket and the stdlib's server interface a handler sees (``server``)."""

    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Expositions drawn at once (send_exposition): the others wait without the GIL, so a
        # flood of scrapes cannot slow every other worker to a crawl.
        self.exposition_slots = threading.BoundedSemaphore(EXPOSITION_SLOTS)
        self.expositions = _Coalesced()

    def handle_error(self, request, client_address) -> None:
        """A client that went away (or refused our certificate) is normal; anything else is one
        line, never a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        sys.stderr.write(f"pizza-probe: error handling a request: {type(exc).__name__}\n")


class _Coalesced:
    """Identical expositions asked for while one is drawn are not drawn again: they take the
    answer of the one being drawn (at most one drawing old; a scrape's time is its start's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drawing: dict[Hashable, concurrent.futures.Future] = {}

    def answer(self, key: Hashable, draw: Callable[[], T]) -> T:
        with self._lock:
            future = self._drawing.get(key)
            mine = future is None
            if future is None:
                future = self._drawing[key] = concurrent.futures.Future()
        if mine:
            try:
                future.set_result(draw())
            except BaseException as exc:  # noqa: BLE001 (raised to each request that waited, and here)
                future.set_exception(exc)
            finally:
                with self._lock:
                    del self._drawing[key]
        return future.result()


class _Feed(io.RawIOBase):
    """A handler's raw input: the bytes the dispatcher already read, then the socket. Paused,
    it reads nothing more from the socket, so what is buffered can be taken back."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.prefix = b""
        self.paused = False
        self.deadline = float("inf")  # no read from the socket after this (monotonic)
        self.fed = 0  # bytes given to the handler's reader since the request began

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        if self.prefix:
            count = min(len(buffer), len(self.prefix))
            buffer[:count] = self.prefix[:count]
            self.prefix = self.prefix[count:]
            self.fed += count
            return count
        if self.paused:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's body took too long")
        timeout = self.sock.gettimeout()
        self.sock.settimeout(min(left, timeout) if timeout is not None else left)
        try:
            count = self.sock.recv_into(buffer)
        finally:
            self.sock.settimeout(timeout)
        self.fed += count
        return count


class _Conn:
    """One client connection: waiting in the dispatcher or being answered by a worker."""

    __slots__ = ("addr", "feed", "handler", "head_started", "last", "pending", "registered",
                 "scanned", "server", "sock")

    def __init__(self, sock: socket.socket, addr, server: _Server, now: float) -> None:
        self.sock = sock
        self.addr = addr
        self.server = server
        self.pending = bytearray()  # read, not yet given to the handler
        self.scanned = 0  # how much of pending is known not to end the head
        self.last = now  # last sign of life: bytes read, or the previous answer sent
        self.head_started = now
        self.handler: BaseHTTPRequestHandler | None = None
        self.feed: _Feed | None = None
        self.registered = False

    def head_ready(self) -> bool:
        """Whether ``pending`` holds a whole request head."""
        start = max(0, self.scanned - 3)
        self.scanned = len(self.pending)
        return (self.pending.find(b"\r\n\r\n", start) >= 0
                or self.pending.find(b"\n\n", start) >= 0
                or self.pending.find(b"\n\r\n", start) >= 0)

    def is_quick(self, kind: str = "quick_paths") -> bool:
        quick = getattr(self.server.RequestHandlerClass, kind, ())
        if not quick:
            return False
        words = bytes(self.pending[:self.pending.find(b"\n")]).split()
        return len(words) >= 2 and words[1].split(b"?", 1)[0].decode("latin-1") in quick


class _Pool:
    """Worker threads, started when needed and ended after a while without work: ``general``
    of them take any request, ``reserved`` more only quick ones. Work that finds every worker
    busy waits in a queue; quick work is taken first."""

    def __init__(self, name: str, run: Callable[[_Conn], None], general: int,
                 reserved: int) -> None:
        if general < 1 or reserved < 0:
            raise ValueError("a server needs at least one worker")
        self._name = name
        self._run = run
        self._limit = {"general": general, "reserved": reserved}
        self._count = {"general": 0, "reserved": 0}
        self._idle: dict[str, list[_Worker]] = {"general": [], "reserved": []}
        self._queue: dict[bool, collections.deque[_Conn]] = {
            True: collections.deque(), False: collections.deque()}
        self._lock = threading.Lock()
        self._stopped = False
        self._started = 0

    @property
    def threads(self) -> int:
        with self._lock:
            return self._count["general"] + self._count["reserved"]

    def submit(self, conn: _Conn, quick: bool, first: bool = False) -> bool:
        """Queue ``conn`` for a worker (``first``: before the others waiting); False once
        stopped."""
        kinds = ("reserved", "general") if quick else ("general",)
        with self._lock:
            if self._stopped:
                return False
            for kind in kinds:
                if self._idle[kind]:
                    worker = self._idle[kind].pop()  # the most recently busy: the others end
                    worker.conn = conn
                    worker.event.set()
                    return True
            for kind in kinds:
                if self._count[kind] < self._limit[kind]:
                    self._count[kind] += 1
                    self._started += 1
                    worker = _Worker(kind, conn)
                    number = self._started
                    break
            else:
                if first:
                    self._queue[quick].appendleft(conn)
                else:
                    self._queue[quick].append(conn)
                return True
        try:
            threading.Thread(target=self._work, args=(worker,), daemon=True,
                             name=f"{self._name}-worker-{number}").start()
        except RuntimeError:  # out of threads: the workers there are will take it
            with self._lock:
                self._count[worker.kind] -= 1
                self._queue[quick].append(conn)
        return True

    def shed(self) -> _Conn | None:
        """The connection queued last for a general worker, taken off the queue."""
        with self._lock:
            return self._queue[False].pop() if self._queue[False] else None

    def _next(self, worker: _Worker) -> _Conn | None:
        if self._queue[True]:
            return self._queue[True].popleft()
        if worker.kind == "general" and self._queue[False]:
            return self._queue[False].popleft()
        return None

    def _work(self, worker: _Worker) -> None:
        conn = worker.conn
        while conn is not None:  # ends when stopped or idle for _WORKER_IDLE_EXIT
            self._run(conn)
            with self._lock:
                conn = None if self._stopped else self._next(worker)
                if conn is None:
                    if self._stopped:
                        self._count[worker.kind] -= 1
                        return
                    worker.conn = None
                    worker.event.clear()
                    self._idle[worker.kind].append(worker)
            if conn is None:
                worker.event.wait(_WORKER_IDLE_EXIT)
                with self._lock:
                    conn, worker.conn = worker.conn, None
                    if conn is None:  # not given work: nobody can give it any now
                        if worker in self._idle[worker.kind]:
                            self._idle[worker.kind].remove(worker)
                        self._count[worker.kind] -= 1
                        return

    def stop(self) -> list[_Conn]:
        """Idle workers end, busy ones after their request; the queued connections are
        returned, for the caller to close."""
        with self._lock:
            self._stopped = True
            for kind in self._idle:
                for worker in self._idle[kind]:
                    worker.event.set()
                self._idle[kind].clear()
            queued = list(self._queue[True]) + list(self._queue[False])
            self._queue[True].clear()
            self._queue[False].clear()
        return queued


class _Worker:
    __slots__ = ("conn", "event", "kind")

    def __init__(self, kind: str, conn: _Conn | None) -> None:
        self.kind = kind
        self.conn = conn
        self.event = threading.Event()


class _Engine:
    """The dispatcher thread and the worker pool for one or more listening sockets."""

    def __init__(self, servers: Sequence[_Server], name: str, *, idle_timeout: float,
                 max_connections: int | None, workers: int, reserved_workers: int) -> None:
        if not idle_timeout > 0:
            raise ValueError("the idle timeout must be positive")
        self.servers = list(servers)
        self.name = name
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections or default_max_connections()
        self.pool = _Pool(name, self._serve, workers, reserved_workers)
        self.thread = threading.Thread(target=self._dispatch_loop, name=name, daemon=True)
        self._selector: selectors.BaseSelector  # these three made by start()
        self._wake_r: socket.socket
        self._wake_w: socket.socket
        self._idle: collections.OrderedDict[_Conn, None] = collections.OrderedDict()
        self._returned: collections.deque[tuple[_Conn, bytes]] = collections.deque()
        self._paused: dict[_Server, float] = {}  # listeners resting after running out of fds
        self._lock = threading.Lock()  # guards _open, _returned and _closed
        self._open = 0
        self._closed = False
        self._stopping = threading.Event()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return self._open

    # --- the dispatcher thread ------------------------------------------------------------------

    def start(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        for server in self.servers:
            server.socket.setblocking(False)
            self._selector.register(server.socket, selectors.EVENT_READ, server)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.thread.start()

    def _dispatch_loop(self) -> None:
        try:
            while not self._stopping.is_set():  # ends at stop()
                for key, _ in self._selector.select(self._select_timeout()):
                    self._on_event(key.data)
                now = time.monotonic()
                self._take_back(now)
                self._expire(now)
                self._resume_listeners(now)
        finally:
            self._close_all()

    def _on_event(self, data) -> None:
        try:
            if data is None:
                self._drain_wake()
            elif isinstance(data, _Server):
                self._accept(data)
            else:
                self._read(data, time.monotonic())
        except Exception as exc:  # noqa: BLE001 (a bug of ours must not end the server: one line)
            sys.stderr.write(f"pizza-probe: error in the HTTP dispatcher: {type(exc).__name__}\n")
            if isinstance(data, _Conn):
                self._close(data)

    def _select_timeout(self) -> float:
        timeout = 1.0
        if self._idle:
            oldest = next(iter(self._idle))
            timeout = min(timeout, oldest.last + self.idle_timeout - time.monotonic())
        if self._paused:
            timeout = min(timeout, min(self._paused.values()) - time.monotonic())
        return max(timeout, 0.005)

    def _drain_wake(self) -> None:
        for _ in range(64):
            try:
                if not self._wake_r.recv(4096):
                    return
            except (BlockingIOError, InterruptedError):
                return

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed (stopping)
            pass

    def _accept(self, server: _Server) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, addr = server.socket.accept()
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    if self._make_room():
                        continue
                    self._pause(server)  # else the listener stays readable: a busy loop
                    return
                continue  # ECONNABORTED and the like: that client is gone
            now = time.monotonic()
            with self._lock:
                full = self._open >= self.max_connections
            if full and not self._make_room():
                _close_socket(sock)  # every connection is busy: refuse this one
                continue
            with self._lock:
                self._open += 1
            sock.setblocking(False)
            self._read(_Conn(sock, addr, server, now), now)

    def _pause(self, server: _Server) -> None:
        self._selector.unregister(server.socket)
        self._paused[server] = time.monotonic() + 0.1

    def _resume_listeners(self, now: float) -> None:
        for server, until in list(self._paused.items()):
            if until <= now:
                del self._paused[server]
                self._selector.register(server.socket, selectors.EVENT_READ, server)

    def _make_room(self) -> bool:
        """Close the connection idle the longest or, if none is idle, refuse the request that
        came last of those waiting for a worker (a new connection may be a quick page)."""
        if self._idle:
            self._close(next(iter(self._idle)))
            return True
        conn = self.pool.shed()
        if conn is None:
            return False
        try:  # the socket is non-blocking and its buffer empty: this fits, or is dropped
            conn.sock.send(_OVERLOADED)
        except OSError:
            pass
        self._shut(conn)
        return True

    def _read(self, conn: _Conn, now: float) -> None:
        """Read what has arrived: hand a complete head to a worker, wait for more, or close."""
        for _ in range(64):  # each read adds up to 64 KiB; a head is whole within 16 KiB
            if conn.pending and conn.head_ready():
                self._hand_over(conn)
                return
            if len(conn.pending) >= MAX_HEAD_BYTES:  # no head is this large: answered here
                try:
                    conn.sock.send(_TOO_LARGE)
                except OSError:
                    pass
                self._close(conn)
                return
            try:
                data = conn.sock.recv(_READ_SIZE)
            except _WOULD_BLOCK:
                break
            except OSError:  # reset, or a TLS handshake the client gave up: its business
                self._close(conn)
                return
            if not data:
                self._close(conn)
                return
            if not conn.pending:
                conn.head_started = now
            conn.pending += data
            conn.last = now
        if conn.pending and now - conn.head_started > self.idle_timeout:
            self._close(conn)  # a head dripped in for longer than a connection may idle
            return
        if not conn.registered:
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)
            conn.registered = True
        self._idle[conn] = None
        self._idle.move_to_end(conn)

    def _hand_over(self, conn: _Conn) -> None:
        self._unregister(conn)
        if not self.pool.submit(conn, conn.is_quick(), conn.is_quick("urgent_paths")):
            self._close(conn)

    def _unregister(self, conn: _Conn) -> None:
        self._idle.pop(conn, None)
        if conn.registered:
            self._selector.unregister(conn.sock)
            conn.registered = False

    def _take_back(self, now: float) -> None:
        with self._lock:
            returned = list(self._returned)
            self._returned.clear()
        for conn, leftover in returned:
            conn.pending = bytearray(leftover)
            conn.scanned = 0
            conn.last = conn.head_started = now
            try:
                conn.sock.setblocking(False)
            except OSError:
                self._close(conn)
                continue
            self._read(conn, now)  # a pipelined request, or TLS bytes the selector cannot see

    def _expire(self, now: float) -> None:
        for _ in range(len(self._idle)):
            oldest = next(iter(self._idle))
            if oldest.last + self.idle_timeout > now:
                return
            self._close(oldest)

    def _close(self, conn: _Conn) -> None:
        """Close a connection the dispatcher holds."""
        self._unregister(conn)
        self._shut(conn)

    def _shut(self, conn: _Conn) -> None:
        if conn.handler is not None:
            try:
                conn.handler.finish()
            except Exception:  # noqa: BLE001 (closing anyway: a half-dead socket may raise anything)
                pass
        _close_socket(conn.sock)
        with self._lock:
            self._open -= 1

    def _close_all(self) -> None:
        with self._lock:
            self._closed = True
            returned = [conn for conn, _ in self._returned]
            self._returned.clear()
        for conn in list(self._idle) + returned + self.pool.stop():
            self._close(conn)
        for server in self.servers:
            if server not in self._paused:
                try:
                    self._selector.unregister(server.socket)
                except (KeyError, ValueError, OSError):
                    pass
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # --- the workers ----------------------------------------------------------------------------

    def _serve(self, conn: _Conn) -> None:
        """Answer one request on ``conn``; give a keep-alive connection back to the dispatcher."""
        leftover = b""
        try:
            if conn.handler is None or conn.feed is None:
                conn.handler, conn.feed = self._new_handler(conn)
            handler, feed = conn.handler, conn.feed
            # a client that never reads its answer holds a worker WRITE_TIMEOUT per write
            conn.sock.settimeout(WRITE_TIMEOUT)
            feed.prefix, conn.pending = bytes(conn.pending), bytearray()
            head_length = _head_length(feed.prefix)
            feed.paused, feed.fed = False, 0
            feed.deadline = time.monotonic() + BODY_DEADLINE  # a dripped body: cut off
            handler.close_connection = True
            handler.handle_one_request()
            keep = not handler.close_connection
            if keep:  # take back what was read past this request: the next one's start
                feed.paused = True
                pieces = []
                for _ in range(64):  # a 8 KiB buffer, then a prefix of at most 65 KiB
                    piece = handler.rfile.read1(_READ_SIZE)
                    if not piece:
                        break
                    pieces.append(piece)
                leftover = b"".join(pieces)
                # The connection goes on only if the handler read exactly the body the head
                # announced: a body left unread (a GET's, a chunked one, one of two
                # Content-Lengths) is never taken for the next request (request smuggling).
                keep = _read_exactly_its_body(handler, feed.fed - len(leftover) - head_length)
        except Exception:  # noqa: BLE001 (handle_error says it in one line, never a traceback)
            conn.server.handle_error(conn.sock, conn.addr)
            keep = False
        if keep and not self._stopping.is_set():
            with self._lock:
                if not self._closed:
                    self._returned.append((conn, leftover))
                    self._wake()
                    return
        self._shut(conn)

    def _new_handler(self, conn: _Conn) -> tuple[BaseHTTPRequestHandler, _Feed]:
        """The stdlib's handler set up as for a connection of its own, minus its loop: each
        request is one ``handle_one_request`` in whichever worker is free."""
        cls = cast("type[BaseHTTPRequestHandler]", conn.server.RequestHandlerClass)
        handler = cls.__new__(cls)
        handler.request = conn.sock
        handler.client_address = conn.addr
        handler.server = conn.server
        conn.sock.settimeout(self.idle_timeout)
        handler.setup()
        handler.rfile.close()  # the socket's own reader is replaced by one with our prefix
        feed = _Feed(conn.sock)
        handler.rfile = io.BufferedReader(feed)
        return handler, feed

    def stop(self) -> None:
        self._stopping.set()
        if self.thread.is_alive():
            self._wake()
            self.thread.join(timeout=2)


def _head_length(data: bytes) -> int:
    """Where the request head in ``data`` ends (after its blank line)."""
    ends = [index + len(mark) for mark in (b"\r\n\r\n", b"\n\n", b"\n\r\n")
            if (index := data.find(mark)) >= 0]
    return min(ends) if ends else len(data)


def _read_exactly_its_body(handler: BaseHTTPRequestHandler, consumed: int) -> bool:
    """Whether the handler read exactly the body its request announced, no more, no less."""
    headers = getattr(handler, "headers", None)
    if headers is None or headers.get_all("Transfer-Encoding"):
        return False
    lengths = {value.strip() for value in headers.get_all("Content-Length") or []}
    if len(lengths) > 1:
        return False
    expected = lengths.pop() if lengths else "0"
    return expected.isascii() and expected.isdigit() and int(expected) == consumed


def _close_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)  # as socketserver does: the client sees the end
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _bind(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> _Server:
    server_class: type[_Server] = type("Server", (_Server,), {})
    if ":" in host:
        server_class.address_family = socket.AF_INET6
    try:
        return server_class((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class BackgroundServer:
    """Binds at construction (so errors surface at once), serves from ``start()`` to
    ``stop()``: one dispatcher thread, and at most ``workers + reserved_workers`` workers
    however many clients connect."""

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler],
                 *, name: str = "http", idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 max_connections: int | None = None, workers: int = DEFAULT_WORKERS,
                 reserved_workers: int = DEFAULT_RESERVED_WORKERS) -> None:
        self.server = _bind(host, port, handler)
        self.name = name
        self.engine = _Engine([self.server], name, idle_timeout=idle_timeout,
                              max_connections=max_connections, workers=workers,
                              reserved_workers=reserved_workers)
        self.thread = self.engine.thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    def url(self, path: str = "") -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{path}"

    def start(self) -> BackgroundServer:
        self.engine.start()
        return self

    def stop(self) -> None:
        self.engine.stop()
        self.server.server_close()


class MultiServer:
    """Many listening addresses, one handler, one dispatcher and one pool of workers: a fleet
    of targets for tests and benchmarks without a thread per address."""

    def __init__(self, addresses: Sequence[tuple[str, int]],
                 handler: type[BaseHTTPRequestHandler], *, name: str = "http-multi",
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, workers: int = DEFAULT_WORKERS) -> None:
        self.servers: list[_Server] = []
        try:
            for host, port in addresses:
                self.servers.append(_bind(host, port, handler))
        except ConfigError:
            self._close()
            raise
        self.engine = _Engine(self.servers, name, idle_timeout=idle_timeout,
                              max_connections=None, workers=workers, reserved_workers=0)
        self.thread = self.engine.thread

    def start(self) -> MultiServer:
        if self.servers:
            self.engine.start()
        return self

    def _close(self) -> None:
        for server in self.servers:
            server.server_close()

    def stop(self) -> None:
        self.engine.stop()
        self._close()


_VERSION = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9}){0,3}")


def _readable_accept(accept: str) -> str:
    """``accept`` without the media ranges prometheus_client cannot take: a ``version`` that is
    not dotted numbers (its comparison raises, and the value is copied into Content-Type as
    sent) or a range with a line break or other control character (an obsolete line fold).
    Nothing left: the text format."""
    kept = []
    for media_range in accept.split(","):
        versions = [param.strip()[len("version="):] for param in media_range.split(";")[1:]
                    if param.strip().startswith("version=")]
        if media_range.isprintable() and all(_VERSION.fullmatch(v) for v in versions):
            kept.append(media_range)
    return ",".join(kept)


_REFUSED = re.compile(r"\s*q\s*=\s*0(?:\.0{0,3})?\s*", re.IGNORECASE)


def _accepted_codings(accept_encoding: str) -> str:
    """``accept_encoding`` without the codings it refuses (``q=0``: prometheus_client reads any
    mention of gzip as a yes)."""
    return ",".join(coding for coding in accept_encoding.split(",")
                    if not any(_REFUSED.fullmatch(param) for param in coding.split(";")[1:]))


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that logs nothing to stderr and has helpers for answers."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # stalls the second by ~40 ms, which would show up as step latency.
    disable_nagle_algorithm = True
    server_version = "pizza-probe"
    sys_version = ""
    # Paths answered at once (send_standard_page's): the reserved workers answer them too, so
    # they stay answerable while long polls and journeys hold every other worker. Not "/": the
    # status page is drawn from every target's journeys, and a flood of it must not hold the
    # workers a health check needs.
    quick_paths: frozenset[str] = frozenset({"/metrics", "/healthz"})
    # Quick paths that go before every request waiting for a worker: a health check must not
    # wait for a flood of scrapes (the image's HEALTHCHECK gives up after 5 s).
    urgent_paths: frozenset[str] = frozenset({"/healthz"})
    # On every answer of send_body unless it names its own: a browser sniffs no type and runs,
    # loads or frames nothing from a metrics page, a 404 or a JSON answer.
    default_headers: dict[str, str] = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; base-uri 'none'; form-action 'none'; "
                                   "frame-ancestors 'none'"}

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_body(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**self.default_headers, **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_exposition(self, registry: CollectorRegistry) -> None:
        """``registry`` as prometheus_client's own WSGI app answers it: OpenMetrics (with
        exemplars) when ``Accept`` asks for it, else the text format; gzip when
        ``Accept-Encoding`` allows it; only the families ``name[]`` names, if any. The app is
        called with the few keys of a WSGI environ it reads: this server's limits on heads,
        bodies and workers stay in front of it."""
        environ = {
            "REQUEST_METHOD": "GET",  # HEAD too: send_body leaves the body out
            "PATH_INFO": urlsplit(self.path).path,
            "QUERY_STRING": urlsplit(self.path).query,
            "HTTP_ACCEPT": _readable_accept(self.headers.get("Accept", "")),
            "HTTP_ACCEPT_ENCODING": _accepted_codings(self.headers.get("Accept-Encoding", "")),
        }
        def draw() -> tuple[int, dict[str, str], bytes]:
            answer: dict = {}

            def start_response(status: str, headers: list[tuple[str, str]],
                               exc_info=None) -> None:
                answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

            with server.exposition_slots:
                body = b"".join(make_wsgi_app(registry)(environ, start_response))
            return answer["status"], answer["headers"], body

        server = cast("_Server", self.server)
        status, shared_headers, body = server.expositions.answer(
            (id(registry), *environ.values()), draw)
        headers = dict(shared_headers)
        content_type = headers.pop("Content-Type", "text/plain; charset=utf-8")
        headers["Vary"] = "Accept, Accept-Encoding"  # one URL, several answers
        self.send_body(status, body, content_type, headers)

    def send_standard_page(self, path: str, registry: CollectorRegistry,
                           status_page: Callable[[], bytes]) -> None:
        """``/metrics`` (:meth:`send_exposition`), ``/healthz`` and ``/`` as every pizza-probe
        server has them; 404 else."""
        if path == "/metrics":
            self.send_exposition(registry)
        elif path == "/healthz":
            self.send_body(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/":
            self.send_body(200, status_page(), "text/html; charset=utf-8")
        else:
            self.send_body(404, b"not found\n", "text/plain; charset=utf-8")
