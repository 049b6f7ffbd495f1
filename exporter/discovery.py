"""Which factory verifies a service's pizzas.

The configured ``--factory-url`` (a module's ``factory_url``) if there is one. Otherwise the
service says where its factory is: ``GET /api/docs`` answers ``config.factory``. A service that
does not say (an older fork, a 404) gets the public factory. What a service named is kept for
a few minutes, so a journey every few seconds asks once, not every time.

Safety: the service's answer only chooses where the pizza JWT is verified (a POST of the JWT,
no credential). It never widens the sidecar's allow-list of recovery-link hosts.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable

from .clock import Clock, SystemClock
from .config import PUBLIC_FACTORY_URL, ConfigError, ProbeConfig
from .logs import get_logger
from .result import StepFailure

DEFAULT_TTL = 300.0
MAX_SERVICES = 10_000
SOURCES = ("configured", "service", "default")


@dataclasses.dataclass(frozen=True)
class FactoryChoice:
    url: str
    source: str  # one of SOURCES
    note: str = ""  # why the public factory, when the service did not say


class FactoryDirectory:
    """The factory each service named, remembered for ``ttl`` seconds (a failed question is not
    remembered: the next journey asks again)."""

    def __init__(self, *, ttl: float = DEFAULT_TTL, clock: Clock | None = None) -> None:
        self.ttl = ttl
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._known: collections.OrderedDict[str, tuple[FactoryChoice, float]] = \
            collections.OrderedDict()

    def choose(self, config: ProbeConfig, ask: Callable[[], str | None]) -> FactoryChoice:
        """``ask`` is the service's answer to ``GET /api/docs``: a URL, None (it does not say:
        the public factory), or a raised StepFailure (it did not answer, or named junk).

        The public factory is chosen only when the service does not say. When it cannot be
        asked, the last answer is used again however old; with none, the StepFailure is raised
        (the verify step fails) rather than sending a private shop's pizza off-site."""
        if config.factory_url is not None:
            return FactoryChoice(config.factory_url, "configured")
        service = config.service_url
        now = self.clock.monotonic()
        with self._lock:
            entry = self._known.get(service)
        known = entry[0] if entry is not None else None
        if entry is not None and now - entry[1] < self.ttl:
            return entry[0]
        try:
            choice = _choice(ask())
        except StepFailure as failure:
            if known is not None:
                return dataclasses.replace(known, note=f"GET /api/docs failed ({failure.reason}): "
                                                       "the last answer is used again")
            raise StepFailure(failure.reason, "cannot learn the factory: GET /api/docs: "
                              f"{failure.detail}", status=failure.status) from None
        with self._lock:
            self._known[service] = (choice, now)
            self._known.move_to_end(service)
            while len(self._known) > MAX_SERVICES:
                self._known.popitem(last=False)
        self._tell(service, known, choice)
        return choice

    def peek(self, service_url: str) -> FactoryChoice | None:
        """The last factory ``service_url`` named, however old; no request."""
        with self._lock:
            entry = self._known.get(service_url)
        return entry[0] if entry is not None else None

    @staticmethod
    def _tell(service: str, old: FactoryChoice | None, new: FactoryChoice) -> None:
        if old is None or (old.url, old.source) != (new.url, new.source):
            get_logger().info("factory chosen", extra={"fields": {
                "service": service, "factory": new.url, "source": new.source,
                **({"note": new.note} if new.note else {})}})


def _choice(named: str | None) -> FactoryChoice:
    from .modules import normalize_target  # one canonical URL check for every target

    if named is None:
        return FactoryChoice(PUBLIC_FACTORY_URL, "default",
                             "the service does not name its factory at GET /api/docs")
    try:
        return FactoryChoice(normalize_target(named, name="config.factory"), "service")
    except ConfigError:
        raise StepFailure("bad_response", "the factory the service names at GET /api/docs is "
                          "not a plain http(s) URL") from None
