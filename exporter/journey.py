"""One synthetic order, the way a customer places it, judged strictly.

health -> login -> menu -> franchises -> order -> verify -> logout. The journey succeeds only if
every step answered as documented, the pizza JWT verified at the factory, and the order answer
carried no chaos link. Logout is attempted after any failure once a token exists. A read-only
configuration skips the order and its verification.

A ``budget`` (a Prometheus scrape's timeout, as the blackbox exporter uses it) bounds the whole
journey; a little of it is kept back so that logout can still run after a step used up the rest.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import TypeVar

import requests

from . import transport
from .client import PizzaClient
from .clock import Clock, SystemClock
from .config import ProbeConfig
from .discovery import FactoryChoice, FactoryDirectory
from .redact import RecoveryLink, secret_parts
from .result import JourneyResult, StepFailure, StepResult
from .watchdog import Watchdog

T = TypeVar("T")

# Seconds of a journey's budget kept for logout (at most a quarter of the budget).
LOGOUT_RESERVE = 1.0


class _ReadOnlyDone(Exception):
    """A read-only journey has read the menu and franchises: on to logout."""


class _Steps:
    """Runs steps in order, timing each with the monotonic clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.results: list[StepResult] = []
        self.failure: tuple[str, StepFailure] | None = None

    def run(self, name: str, action: Callable[[], T]) -> T:
        started = self.clock.monotonic()
        try:
            value = action()
        except StepFailure as failure:
            self.results.append(
                StepResult(name, False, self.clock.monotonic() - started, failure.status,
                           failure.reason, failure.detail)
            )
            if self.failure is None:
                self.failure = (name, failure)
            raise
        self.results.append(StepResult(name, True, self.clock.monotonic() - started, 200))
        return value


def run_journey(
    config: ProbeConfig,
    *,
    clock: Clock | None = None,
    session: requests.Session | None = None,
    budget: float | None = None,
    factories: FactoryDirectory | None = None,
    connections: transport.Connections | None = None,
    watchdog: Watchdog | None = None,
) -> JourneyResult:
    """Run one journey against ``config.service_url``; never raises for a failing target.

    Without ``config.factory_url`` the pizza is verified at the factory the service names
    (``factories`` remembers it between journeys; without one, the service is asked each time).
    ``connections`` (the target's, kept across its journeys) and ``watchdog`` (the process's):
    see :class:`~exporter.client.PizzaClient`.
    """
    clock = clock or SystemClock()
    factories = factories or FactoryDirectory(clock=clock)
    started_at = clock.time()
    started = clock.monotonic()
    steps = _Steps(clock)
    version: str | None = None
    link: RecoveryLink | None = None
    token: str | None = None
    factory: FactoryChoice | None = None
    order_id: str | None = None
    if config.factory_url is not None:
        factory = FactoryChoice(config.factory_url, "configured")
    with PizzaClient(config, session, connections=connections, watchdog=watchdog) as client:
        if budget is not None:
            end = time.monotonic() + budget
            client.deadline = end - min(LOGOUT_RESERVE, budget / 4)
        try:
            version = steps.run("health", client.health)
            token = steps.run("login", client.login)
            item = steps.run("menu", lambda: client.cheapest_menu_item(token))
            store = steps.run("franchises", lambda: client.first_store(token))
            if config.read_only:
                raise _ReadOnlyDone
            try:
                answer = steps.run("order", lambda: client.order(token, store, item))
            except StepFailure as failure:
                link = failure.link
                raise
            link = answer.link
            order_id = _order_id(answer.order_id, (
                config.password, token, *(secret_parts(link.reveal()) if link else ())))
            order_seconds = steps.results[-1].duration

            def verify() -> None:
                nonlocal factory
                factory = factories.choose(config, client.docs_factory)  # cached, or asked
                client.verify(answer.jwt, factory.url)

            steps.run("verify", verify)
            if link is not None:
                _judge_link(steps, order_seconds, config.slow_threshold)
        except (StepFailure, _ReadOnlyDone):
            pass
        if budget is not None:
            client.deadline = end
        if token is not None:
            try:
                steps.run("logout", lambda: client.logout(token))
            except StepFailure:
                pass
    duration = clock.monotonic() - started
    if factory is None and not config.read_only:  # not asked this time: what it said last
        factory = factories.peek(config.service_url)
    factory_url = factory.url if factory else None
    factory_source = factory.source if factory else None
    if steps.failure is None:
        return JourneyResult(True, started_at, duration, tuple(steps.results), status=200,
                             target_version=version, factory_url=factory_url,
                             factory_source=factory_source, order_id=order_id)
    failed_step, first_failure = steps.failure
    return JourneyResult(
        success=False,
        started_at=started_at,
        duration=duration,
        steps=tuple(steps.results),
        failed_step=failed_step,
        reason=first_failure.reason,
        detail=first_failure.detail,
        status=first_failure.status,
        chaos_link=link,
        target_version=version,
        factory_url=factory_url,
        factory_source=factory_source,
        order_id=order_id,
    )


# The order ids an exemplar may carry: the service's are integers; 20 digits hold any 64-bit one.
ORDER_ID = re.compile(r"[0-9]{1,20}")


def _order_id(value: int | None, secrets: tuple[str | None, ...]) -> str | None:
    """``order.id`` of the service's answer as text, or None if it is not a short number, or if
    a secret (the password, the token, the chaos link's key or code) stands in it: the id comes
    from the server, and a hostile one could echo the password as the id to have it exported
    on every exemplar."""
    if value is None or not 0 <= value < 10**20:
        return None
    text = str(value)
    if not ORDER_ID.fullmatch(text):
        return None
    if any(secret and secret in text for secret in secrets):
        return None
    return text


def _judge_link(steps: _Steps, order_seconds: float, slow_threshold: float) -> None:
    """A 200 order whose JWT verified but whose answer carried a chaos link fails the order
    step: ``slow`` past the threshold (the factory's throttle), ``chaos_link`` otherwise."""
    if order_seconds >= slow_threshold:
        failure = StepFailure("slow", f"order took {order_seconds:.1f}s and carried a chaos link",
                              status=200)
    else:
        failure = StepFailure("chaos_link", "order answer carried a chaos link", status=200)
    index = next(i for i, step in enumerate(steps.results) if step.name == "order")
    steps.results[index] = dataclasses.replace(
        steps.results[index], ok=False, reason=failure.reason, detail=failure.detail
    )
    if steps.failure is None:
        steps.failure = ("order", failure)
    raise failure
