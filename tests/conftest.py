"""Shared fixtures: a simulator on loopback, polling with a deadline, scraping /metrics."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import TypeVar

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import Simulator, SimulatorOptions

T = TypeVar("T")


def poll(check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05,
         what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy or the deadline passes (then fail)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 (the server may not be up yet: polled again)
            last_error = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")
        time.sleep(interval)


def poll_until_equal(observe: Callable[[], T], expected: T, *, timeout: float = 25.0,
                     interval: float = 0.25, what: str = "Prometheus") -> T:
    """Call ``observe`` until it returns ``expected`` or the deadline passes; then fail with
    what was seen last (a query that has not caught up is polled again, never slept on)."""
    seen, deadline = None, time.monotonic() + timeout
    while seen != expected and time.monotonic() < deadline:
        seen = observe()
        if seen != expected:
            time.sleep(interval)
    assert seen == expected, f"{what} saw {seen}, expected {expected}"
    return seen


class FakeClock:
    """Both clocks stand still until a test moves ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def samples(metrics_text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label items): value} from an exposition text."""
    out = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics_text: str, name: str, **labels: str) -> float | None:
    return samples(metrics_text).get((name, tuple(sorted(labels.items()))))


def start_simulator(**options) -> Simulator:
    options.setdefault("throttle_delay", 0.5)
    return Simulator(SimulatorOptions(**options)).start(("127.0.0.1", 0), ("127.0.0.1", 0))


@pytest.fixture
def simulator():
    sim = start_simulator()
    yield sim
    sim.stop()


def target_args(sim: Simulator) -> list[str]:
    """The flags that point a pizza-probe command at a simulator."""
    return ["--service-url", sim.service_url, "--factory-url", sim.factory_url]


def set_chaos(sim: Simulator, mode: str) -> None:
    """Switch the factory's chaos the way a user does: its vendor endpoint."""
    answer = requests.put(f"{sim.factory_url}/api/vendor/chaos/{mode}", timeout=5,
                          headers={"Authorization": f"Bearer {sim.factory.vendor_key}"})
    assert answer.status_code == 200, answer.text


@pytest.fixture
def processes(tmp_path):
    """Start pizza-probe commands as real processes; all are stopped at the end of the test."""
    from processes import Processes

    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def make_simulator():
    """A factory for simulators with options; all are stopped at the end of the test."""
    started: list[Simulator] = []

    def make(**options) -> Simulator:
        sim = start_simulator(**options)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def start_tls_simulator(**options) -> Simulator:
    """A simulator whose factory is served over HTTPS on port 443 of a loopback address of its
    own (127.x.y.z; the tests run as root), with a certificate from a private CA it made: its
    links are https://127.x.y.z/api/support/... with no port, as the real factory writes them.
    The CA's certificate is ``sim.ca_file``."""
    import random

    from exporter.config import ConfigError

    options.setdefault("throttle_delay", 0.5)
    rng = random.Random()
    last: Exception | None = None
    for _ in range(20):  # another test's factory may hold that address a moment longer
        host = f"127.{rng.randint(1, 254)}.{rng.randint(1, 254)}.{rng.randint(2, 254)}"
        try:
            return Simulator(SimulatorOptions(factory_tls=True, **options)).start(
                ("127.0.0.1", 0), (host, 443))
        except ConfigError as exc:
            last = exc
    raise AssertionError(f"no loopback address with a free port 443: {last}")


@pytest.fixture
def make_tls_simulator():
    """Like ``make_simulator``, with the factory behind TLS (see ``start_tls_simulator``)."""
    started: list[Simulator] = []

    def make(**options) -> Simulator:
        sim = start_tls_simulator(**options)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()
