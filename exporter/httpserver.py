"""A threaded stdlib HTTP server that runs in the background; shared by the exporter, the
simulator and (later) the sidecar."""

from __future__ import annotations

import selectors
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .config import ConfigError


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        """A client that went away (or refused our certificate) is normal; anything else is one
        line, never a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        sys.stderr.write(f"pizza-probe: error handling a request: {type(exc).__name__}\n")


class BackgroundServer:
    """Binds at construction (so errors surface at once), serves in a daemon thread."""

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler],
                 *, name: str = "http") -> None:
        server_class = type("Server", (_Server,), {})
        if ":" in host:
            server_class.address_family = socket.AF_INET6
        try:
            self.server = server_class((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.name = name
        # A short poll interval makes stop() quick; the cost is a few idle wake-ups a second.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name=name,
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def host(self) -> str:
        return self.server.server_address[0]

    def url(self, path: str = "") -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{path}"

    def start(self) -> "BackgroundServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MultiServer:
    """Many listening addresses, one handler, one accepting thread: a fleet of targets for
    tests and benchmarks without a thread per address. Each connection gets its own thread."""

    def __init__(self, addresses: Sequence[tuple[str, int]],
                 handler: type[BaseHTTPRequestHandler], *, name: str = "http-multi") -> None:
        self.servers: list[_Server] = []
        try:
            for host, port in addresses:
                self.servers.append(BackgroundServer(host, port, handler, name=name).server)
        except ConfigError:
            self._close()
            raise
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> "MultiServer":
        if self.servers:
            self.thread.start()
        return self

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            for server in self.servers:
                selector.register(server, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select(0.05):
                    key.fileobj._handle_request_noblock()

    def _close(self) -> None:
        for server in self.servers:
            server.server_close()

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=2)
        self._close()


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that logs nothing to stderr and has helpers for answers."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # stalls the second by ~40 ms, which would show up as step latency.
    disable_nagle_algorithm = True
    server_version = "pizza-probe"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def send_body(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_standard_page(self, path: str, registry: CollectorRegistry,
                           status_page: Callable[[], bytes]) -> None:
        """``/metrics``, ``/healthz`` and ``/`` as every pizza-probe server has them; 404 else."""
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self.send_body(200, encoder(registry), content_type)
        elif path == "/healthz":
            self.send_body(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/":
            self.send_body(200, status_page(), "text/html; charset=utf-8")
        else:
            self.send_body(404, b"not found\n", "text/plain; charset=utf-8")
