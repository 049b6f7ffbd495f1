"""A JWT Pizza service and its pizza factory, in one process, answer for answer as in
``shared/jwt-pizza-api.md``: the embedded default target of the demo and the test suite.

The service and the factory listen on two addresses, as the real pair runs on two hosts. The
service reaches the factory in-process; the probe reaches the factory's verify endpoint and the
recovery link over HTTP, as it would in production.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import hmac
import itertools
import json
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .httpserver import BackgroundServer, MultiServer, QuietHandler
from .simchoices import CHAOS_MODES as CHAOS_MODES  # their home; still importable from here
from .simchoices import FRANCHISE_SHAPES as FRANCHISE_SHAPES
from .simchoices import LINK_FORMS as LINK_FORMS
from .simchoices import LINK_KEY_NAMES as LINK_KEY_NAMES
from .simchoices import LINK_KEYS as LINK_KEYS
from .simchoices import link_key_pair as link_key_pair

SERVICE_VERSION = "20241120.055253"
# The real factory's badjwt chaos answers this one stale token; its first segment does not decode.
BADJWT_TOKEN = ("deadxe6MzE3NjE0ZGY1ZTc0YjA4NjI0ZDU5OTg4Y2E3NTc0ZjYy."
                "eyJ2ZW5kb3IiOnsiaWQiOiJjaGFvcyJ9LCJpYXQiOjE3MzI1ODU2MDB9."
                "c3RhbGUtc2lnbmF0dXJlLW9mLXRoZS1iYWRqd3QtY2hhb3M")
FACTORY_UNREACHABLE = "fetch failed"  # Node's fetch() error, passed on by the service
MAX_REQUEST_BYTES = 1 << 20
MENU = (
    ("Veggie", "A garden of delight", 0.0038),
    ("Pepperoni", "Spicy treat", 0.0042),
    ("Margarita", "Essential classic", 0.0042),
    ("Crusty", "A dry mouthed favorite", 0.0028),
    ("Charred Leopard", "For those with a darker side", 0.0099),
)


class HttpError(Exception):
    """An answer other than 200, in the service's {message, stack} shape."""

    def __init__(self, status: int, message: str, *, stack: bool = True, extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message}
        if stack:
            self.body["stack"] = f"Error: {message}\n    at jwt-pizza-simulator"
        self.body.update(extra or {})


@dataclasses.dataclass
class SimulatorOptions:
    throttle_delay: float = 32.0
    link_key: str = "followLinkToEndChaos"  # either name of a pair (LINK_KEYS)
    link_form: str = "current"
    franchise_shape: str = "new"
    vendor_key: str | None = None
    chaos: str | None = None
    monkey: bool = False
    delay: float = 0.0  # every answer of the service and the factory waits this long
    # Seed of the factory's RS256 signing key. Simulators given the same seed verify each
    # other's pizzas, as the one real factory verifies every student's: many services, one URL.
    signing_key: bytes | None = None
    # Serve the factory over TLS with a certificate from a private CA made at start, written to
    # tls_dir (a new temporary directory if None) as ca.pem, factory.pem and factory-key.pem.
    factory_tls: bool = False
    tls_dir: str | None = None
    # The service cannot reach its factory: every order answers 500 "fetch failed".
    factory_unreachable: bool = False


class Factory:
    """The pizza factory: signs pizzas as JWTs, verifies them, and runs chaos until the link
    with the right fix code is called."""

    def __init__(self, options: SimulatorOptions, on_event: Callable[[str, dict], None]) -> None:
        self.options = options
        self.api_key = secrets.token_hex(16)  # the student's key, embedded in every link
        self.vendor_key = options.vendor_key or secrets.token_hex(16)  # switches chaos
        from .simkeys import JwtSigner  # cryptography: loaded only by the simulator

        self.signer = JwtSigner(options.signing_key)
        self._lock = threading.Lock()
        self._mode: str | None = None
        self._fix_code = ""
        self._on_event = on_event
        self.base_url = ""  # set once the factory listens
        self.shutdown = threading.Event()
        self.link_calls = 0  # calls of either resolver endpoint, right code or not
        self.resolutions = 0
        self.fix_codes: list[str] = []  # every code issued, for tests that grep for secrets

    @property
    def mode(self) -> str | None:
        with self._lock:
            return self._mode

    def set_chaos(self, mode: str | None) -> None:
        if mode is not None and mode not in CHAOS_MODES:
            raise ValueError(mode)
        with self._lock:
            self._mode = mode
            self._fix_code = secrets.token_hex(16) if mode else ""
            if mode:
                self.fix_codes.append(self._fix_code)
        self._on_event("chaos_started" if mode else "chaos_cleared", {"mode": mode})

    def _link(self) -> str:
        if self.options.link_form == "legacy":
            return f"{self.base_url}/api/report?apiKey={self.api_key}&fixCode={self._fix_code}"
        return f"{self.base_url}/api/support/{self.api_key}/report/{self._fix_code}"

    def make_pizza(self, diner: dict, order: dict) -> tuple[bool, str | None, str | None]:
        """(ok, jwt, link) for one order, as chaos dictates."""
        with self._lock:
            mode = self._mode
            link = self._link() if mode else None
        if mode == "fail":
            return False, None, link
        if mode == "throttle":
            self.shutdown.wait(self.options.throttle_delay)
        if mode == "badjwt":
            return True, BADJWT_TOKEN, link
        jwt = self.signer.sign({"vendor": {"id": "sim", "name": "JWT Pizza Simulator"},
                                "diner": diner, "order": order})
        return True, jwt, link

    def verify(self, jwt: Any) -> dict | None:
        """The payload (vendor, diner, order) of a valid pizza JWT, else None."""
        claims = self.signer.verify(jwt)
        if claims is None:
            return None
        return {key: claims[key] for key in ("vendor", "diner", "order") if key in claims}

    def resolve(self, api_key: str, fix_code: str) -> str:
        """'resolved', 'no_chaos', 'unresolved' (wrong code) or 'unknown_key'."""
        with self._lock:
            self.link_calls += 1
            if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
                return "unknown_key"
            if self._mode is None:
                return "no_chaos"
            if not hmac.compare_digest(fix_code.encode(), self._fix_code.encode()):
                return "unresolved"
            mode, self._mode, self._fix_code = self._mode, None, ""
            self.resolutions += 1
        self._on_event("chaos_resolved", {"mode": mode})
        return "resolved"


class PizzaService:
    """The JWT Pizza service's state: users, tokens, menu, franchises, orders, chaos monkey."""

    def __init__(self, options: SimulatorOptions, factory: Factory) -> None:
        self.options = options
        self.factory = factory
        self.monkey = options.monkey
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.users: dict[str, dict] = {}
        for name, email, password, role in (
            ("常用名字", "a@jwt.com", "admin", "admin"),
            ("pizza diner", "d@jwt.com", "diner", "diner"),
            ("pizza franchisee", "f@jwt.com", "franchisee", "franchisee"),
        ):
            self.users[email] = {"id": next(self._ids), "name": name, "email": email,
                                 "password": password, "roles": [{"role": role}]}
        self.users["f@jwt.com"]["roles"].append({"role": "franchisee", "objectId": 1})
        self.tokens: dict[str, str] = {}
        self.menu = [{"id": i, "title": t, "image": f"pizza{i}.png", "price": p, "description": d}
                     for i, (t, d, p) in enumerate(MENU, start=1)]
        self.franchises = [{"id": 1, "name": "pizzaPocket", "stores": [{"id": 1, "name": "SLC"}]}]
        self.orders: list[dict] = []
        self._order_ids = itertools.count(1)
        self.factory_reachable = not options.factory_unreachable

    def docs(self) -> dict:
        """``GET /api/docs``: the endpoints, and in ``config`` the factory the service calls."""
        return {"version": SERVICE_VERSION,
                "endpoints": [{"method": m, "path": p} for m, p in (
                    ("PUT", "/api/auth"), ("POST", "/api/auth"), ("DELETE", "/api/auth"),
                    ("GET", "/api/order/menu"), ("GET", "/api/order"), ("POST", "/api/order"),
                    ("GET", "/api/franchise"))],
                "config": {"factory": self.factory.base_url, "db": "127.0.0.1"}}

    @staticmethod
    def public_user(user: dict) -> dict:
        return {k: v for k, v in user.items() if k != "password"}

    def user_for(self, headers) -> dict:
        auth = headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self._lock:
            email = self.tokens.get(token)
        if not email:
            raise HttpError(401, "unauthorized", stack=False)
        return self.users[email]

    def login(self, body: Any) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("email"), str) \
                or not isinstance(body.get("password"), str):
            raise HttpError(500, "data and hash arguments required")  # bcrypt, as in the real one
        user = self.users.get(body["email"])
        # The real login skips the password check when the password is empty.
        if user is None or (body["password"] != "" and body["password"] != user["password"]):
            raise HttpError(404, "unknown user")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = user["email"]
        return {"user": self.public_user(user), "token": token}

    def register(self, body: Any) -> dict:
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) and body.get(k) for k in ("name", "email", "password")
        ):
            raise HttpError(400, "name, email, and password are required", stack=False)
        with self._lock:
            user = {"id": next(self._ids), "name": body["name"], "email": body["email"],
                    "password": body["password"], "roles": [{"role": "diner"}]}
            self.users[body["email"]] = user  # no unique email, as in the real service
            token = secrets.token_urlsafe(24)
            self.tokens[token] = user["email"]
        return {"user": self.public_user(user), "token": token}

    def logout(self, headers) -> dict:
        self.user_for(headers)
        token = headers.get("Authorization", "")[7:]
        with self._lock:
            self.tokens.pop(token, None)
        return {"message": "logout successful"}

    def franchise_list(self) -> Any:
        if self.options.franchise_shape == "old":
            return self.franchises
        return {"franchises": self.franchises, "more": False}

    def set_monkey(self, headers, state: str) -> dict:
        user = self.user_for(headers)
        if not any(role.get("role") == "admin" for role in user["roles"]):
            raise HttpError(403, "unable to change chaos", stack=False)
        self.monkey = state == "true"
        self.factory._on_event("monkey", {"enabled": self.monkey})
        return {"chaos": self.monkey}

    def place_order(self, headers, body: Any) -> dict:
        user = self.user_for(headers)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise HttpError(500, "Cannot read properties of undefined (reading 'items')")
        items = body["items"]
        menu_ids = {item["id"] for item in self.menu}
        for item in items:
            if not isinstance(item, dict) or item.get("menuId") not in menu_ids:
                raise HttpError(500, "No ID found")
        if self.monkey and secrets.randbelow(2) == 0:
            raise HttpError(500, "Chaos monkey")
        with self._lock:
            order = {"franchiseId": body.get("franchiseId"), "storeId": body.get("storeId"),
                     "items": items, "id": next(self._order_ids)}
            self.orders.append(order)  # stored even when the factory then fails
        diner = {"id": user["id"], "name": user["name"], "email": user["email"]}
        if not 1 <= len(items) <= 20:  # the oven is full: a long wait, then no link
            self.factory.shutdown.wait(self.options.throttle_delay)
            raise HttpError(500, "Failed to fulfill order at factory", stack=False)
        if not self.factory_reachable:
            raise HttpError(500, FACTORY_UNREACHABLE)
        ok, jwt, link = self.factory.make_pizza(diner, order)
        key_ok, key_failed = link_key_pair(self.options.link_key)
        if not ok:
            extra = {key_failed: link} if link else {}
            raise HttpError(500, "Failed to fulfill order at factory", stack=False, extra=extra)
        answer = {"order": order, "jwt": jwt}
        if link:
            answer[key_ok] = link
        return answer


Route = tuple[str, "re.Pattern[str]", Callable[..., Any]]


def _express_headers(data: bytes) -> dict[str, str]:
    """What the real service's Express app adds to every answer: CORS, a weak ETag, keep-alive."""
    digest = hashlib.sha1(data).digest()
    tag = base64.b64encode(digest).decode()[:27]
    return {"X-Powered-By": "Express", "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
            "Access-Control-Allow-Headers": "Content-Type, Authorization",
            "Access-Control-Allow-Credentials": "true",
            "ETag": f'W/"{len(data):x}-{tag}"', "Connection": "keep-alive",
            "Keep-Alive": "timeout=5"}


def _make_handler(routes: list[Route], counter: collections.Counter | None = None,
                  delay: float = 0.0, *, express: bool = False,
                  bad_json: tuple[int, bool] = (400, True)):
    """``express``: add the real service's headers. ``bad_json``: the status of a body that is
    not JSON, and whether the answer has a stack (the factory's verify: a 500 without one)."""

    class Handler(QuietHandler):
        server_version = "jwt-pizza-simulator"
        default_headers: dict[str, str] = {}  # the real service's headers only

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_body(status, data, "application/json; charset=utf-8",
                           _express_headers(data) if express else None)

        def _raw_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            length = self.headers.get("Content-Length", "0")
            size = int(length) if length.isdigit() else 0
            if size > MAX_REQUEST_BYTES:
                self.close_connection = True
                raise HttpError(413, "request entity too large")
            return self.rfile.read(size) if size else b""

        def _read_chunked(self) -> bytes:
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(64)
                try:
                    size = int(line.split(b";")[0].strip() or b"x", 16)
                except ValueError:
                    self.close_connection = True
                    raise HttpError(400, "bad chunked encoding") from None
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_REQUEST_BYTES:
                    self.close_connection = True
                    raise HttpError(413, "request entity too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)  # the CRLF after each chunk

        def _body(self) -> Any:
            raw = self._raw_body()
            if not raw.strip():
                return {}
            try:
                return json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise HttpError(bad_json[0], "Unexpected token in JSON at position 0",
                                stack=bad_json[1]) from None

        def _dispatch(self) -> None:
            if delay:
                time.sleep(delay)
            parts = urlsplit(self.path)
            try:
                body = self._body() if self.command in ("POST", "PUT", "DELETE", "PATCH") else None
                for method, pattern, action in routes:
                    match = pattern.fullmatch(parts.path.rstrip("/") or "/")  # Express: not strict
                    if match and method == self.command:
                        if counter is not None:
                            counter[(method, pattern.pattern)] += 1
                        self._answer(200, action(self, body, parse_qs(parts.query), *match.groups()))
                        return
                raise HttpError(404, "unknown endpoint", stack=False)
            except HttpError as exc:
                self._answer(exc.status, exc.body)
            except Exception as exc:  # noqa: BLE001 (a simulator bug: the service's shape, no traceback)
                self._answer(500, HttpError(500, type(exc).__name__).body)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

        def do_HEAD(self) -> None:
            self.command = "GET"
            self._dispatch()
            self.command = "HEAD"

    return Handler


class Simulator:
    """The service and the factory, listening on two loopback addresses."""

    def __init__(self, options: SimulatorOptions | None = None,
                 on_event: Callable[[str, dict], None] | None = None) -> None:
        self.options = options or SimulatorOptions()
        link_key_pair(self.options.link_key)  # ValueError for a name no fork used
        self.events: list[tuple[float, str, dict]] = []
        self._listeners = [on_event] if on_event else []
        self.factory = Factory(self.options, self._event)
        self.service = PizzaService(self.options, self.factory)
        self.servers: list[BackgroundServer] = []
        self.fleet: MultiServer | None = None
        # (method, route) -> requests answered by the service; for tests and benchmarks
        self.requests: collections.Counter = collections.Counter()
        self._schedule: threading.Thread | None = None
        self.ca_file: str | None = None  # the private CA's certificate, with factory_tls
        self._own_tls_dir: str | None = None

    def _event(self, name: str, fields: dict) -> None:
        self.events.append((time.time(), name, fields))
        for listener in self._listeners:
            listener(name, fields)

    def start(self, listen: tuple[str, int] = ("127.0.0.1", 3000),
              factory_listen: tuple[str, int] = ("127.0.0.1", 3001),
              also_listen: Sequence[tuple[str, int]] = ()) -> Simulator:
        """Listen and serve. ``also_listen``: more addresses of the same shop (one thread for
        all of them), so one simulator can stand in for a fleet of targets."""
        delay = self.options.delay
        factory_server = BackgroundServer(
            *factory_listen, _make_handler(self._factory_routes(), delay=delay,
                                           bad_json=(500, False)), name="sim-factory")
        service_handler = _make_handler(self._service_routes(), self.requests, delay, express=True)
        try:
            service_server = BackgroundServer(*listen, service_handler, name="sim-service")
        except Exception:
            factory_server.server.server_close()
            raise
        try:
            self.fleet = MultiServer(also_listen, service_handler, name="sim-fleet")
        except Exception:
            factory_server.server.server_close()
            service_server.server.server_close()
            raise
        self.factory.base_url = factory_server.url()
        if self.options.factory_tls:
            self.factory.base_url = self._serve_tls(factory_server)
        self.fleet.start()
        self.servers = [service_server.start(), factory_server.start()]
        if self.options.chaos:
            self.factory.set_chaos(self.options.chaos)
        return self

    def _serve_tls(self, server: BackgroundServer) -> str:
        """Wrap the factory's socket in TLS with a certificate from a private CA made now; the
        factory's URL as the real one writes its links: https, and no port when it is 443."""
        from .simkeys import make_tls_files

        directory = self.options.tls_dir
        if directory is None:  # ours: removed again by stop()
            directory = self._own_tls_dir = tempfile.mkdtemp(prefix="pizza-sim-tls-")
        host = server.host
        self.ca_file, cert, key = make_tls_files(directory, host)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        # the handshake runs later, without blocking, in the server's dispatcher
        server.server.socket = context.wrap_socket(server.server.socket, server_side=True,
                                                   do_handshake_on_connect=False)
        shown = f"[{host}]" if ":" in host else host
        return f"https://{shown}" + ("" if server.port == 443 else f":{server.port}")

    @property
    def service_url(self) -> str:
        return self.servers[0].url()

    @property
    def factory_url(self) -> str:
        return self.factory.base_url

    def start_schedule(self, every: float, modes: list[str]) -> None:
        """Every ``every`` seconds, start the next mode in turn unless chaos is still running."""

        def loop() -> None:
            for mode in itertools.cycle(modes):
                if self.factory.shutdown.wait(every):
                    return
                if self.factory.mode is None:
                    self.factory.set_chaos(mode)

        self._schedule = threading.Thread(target=loop, name="sim-chaos-schedule", daemon=True)
        self._schedule.start()

    def stop(self) -> None:
        self.factory.shutdown.set()
        for server in self.servers:
            server.stop()
        if self.fleet:
            self.fleet.stop()
        if self._own_tls_dir:
            shutil.rmtree(self._own_tls_dir, ignore_errors=True)

    # --- routes ------------------------------------------------------------------------------

    def _service_routes(self) -> list[Route]:
        s = self.service
        r = re.compile
        return [
            ("GET", r("/"), lambda h, b, q: {"message": "welcome to JWT Pizza",
                                             "version": SERVICE_VERSION}),
            ("GET", r("/api/docs"), lambda h, b, q: s.docs()),
            ("PUT", r("/api/auth"), lambda h, b, q: s.login(b)),
            ("POST", r("/api/auth"), lambda h, b, q: s.register(b)),
            ("DELETE", r("/api/auth"), lambda h, b, q: s.logout(h.headers)),
            ("GET", r("/api/order/menu"), lambda h, b, q: s.menu),
            ("GET", r("/api/franchise"), lambda h, b, q: s.franchise_list()),
            ("GET", r("/api/order"), lambda h, b, q: {
                "dinerId": s.user_for(h.headers)["id"], "orders": [], "page": 1}),
            ("POST", r("/api/order"), lambda h, b, q: s.place_order(h.headers, b)),
            ("PUT", r("/api/order/chaos/(true|false)"),
             lambda h, b, q, state: s.set_monkey(h.headers, state)),
        ]

    def _factory_routes(self) -> list[Route]:
        f = self.factory
        r = re.compile

        def verify(h, body, q):
            payload = f.verify(body.get("jwt") if isinstance(body, dict) else None)
            if payload is None:
                raise HttpError(403, "invalid", stack=False)
            return {"message": "valid", "payload": payload}

        def report_current(h, body, q, api_key, fix_code):
            outcome = f.resolve(api_key, fix_code)
            if outcome == "resolved":
                return {"message": "Problem resolved. Pizza is back on the menu!"}
            if outcome == "no_chaos":
                return {"message": "No chaos currently executing"}
            if outcome == "unknown_key":  # the real factory says no more than this
                return {"message": "No chaos currently executing"}
            raise HttpError(400, "Problem unresolved", stack=False)

        def report_legacy(h, body, q):
            outcome = f.resolve(q.get("apiKey", [""])[0], q.get("fixCode", [""])[0])
            if outcome in ("resolved", "no_chaos"):
                return {"msg": "Chaos resolved"}
            error = HttpError(500, "", stack=False)
            error.body = {"msg": "Failed to resolve chaos"}
            raise error

        def vendor_auth(h) -> None:
            auth = h.headers.get("Authorization", "")
            if not hmac.compare_digest(auth.encode(), f"Bearer {f.vendor_key}".encode()):
                raise HttpError(401, "unauthorized", stack=False)

        def set_chaos(h, body, q, mode):
            vendor_auth(h)
            if mode not in CHAOS_MODES + ("none",):
                raise HttpError(400, f"unknown chaos type; use one of {', '.join(CHAOS_MODES)}, none",
                                stack=False)
            f.set_chaos(None if mode == "none" else mode)
            return {"message": "Chaos initiated" if mode != "none" else "Chaos cleared",
                    "chaos": mode}

        def get_chaos(h, body, q):
            vendor_auth(h)
            return {"chaos": f.mode or "none"}

        return [  # no GET /: the real factory answers it 404
            ("POST", r("/api/order/verify"), verify),
            ("GET", r("/api/support/([^/]+)/report/([^/]+)"), report_current),
            ("GET", r("/api/report"), report_legacy),
            ("PUT", r("/api/vendor/chaos/([A-Za-z]+)"), set_chaos),
            ("GET", r("/api/vendor/chaos"), get_chaos),
        ]
