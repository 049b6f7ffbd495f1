"""The deadline watchdog (exporter/watchdog.py) that replaced a thread per HTTP request: one
thread enforces every request's total deadline. A dripping server on 127.0.0.1 is still cut at
its deadline; many requests at once start no thread each; a cancelled deadline never fires; a
target's connections are kept across its journeys and reused within one."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from exporter import transport
from exporter.client import PizzaClient
from exporter.config import ProbeConfig
from exporter.result import StepFailure
from exporter.runtime import JourneyRunner
from exporter.watchdog import Deadline, Watchdog

from conftest import poll


class Dripping:
    """A loopback server, one thread for every connection: to each request it sends a head at
    once, then its body one byte every ``every`` seconds, for at most ``seconds`` (bounded: it
    never outlives the test)."""

    HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n")

    def __init__(self, every: float = 0.05, seconds: float = 10.0) -> None:
        self.every, self.seconds = every, seconds
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(every)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.started = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="dripping", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        ends = time.monotonic() + self.seconds
        clients: list[socket.socket] = []
        while not self.stop.is_set() and time.monotonic() < ends:
            try:
                client, _ = self.listener.accept()
                client.recv(65536)  # the request (small, in one segment on loopback)
                client.sendall(self.HEAD)
                clients.append(client)
                self.started += 1
            except OSError:  # the accept timed out: time to drip
                pass
            for client in list(clients):
                try:
                    client.send(b" ")
                except OSError:
                    clients.remove(client)
                    client.close()
        for client in clients:
            client.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def dripping():
    server = Dripping()
    yield server
    server.close()


@pytest.fixture
def watchdog():
    with Watchdog() as dog:
        yield dog


def test_a_deadline_fires_once_in_the_watchdogs_thread(watchdog):
    fired: list[str] = []
    deadline = watchdog.schedule(0.05, lambda: fired.append(threading.current_thread().name))
    poll(lambda: fired, timeout=5)
    assert fired == ["deadline-watchdog"]
    assert deadline.is_set()
    watchdog.cancel(deadline)  # too late: changes nothing
    assert deadline.is_set() and watchdog.pending() == 0


def test_a_cancelled_deadline_does_not_fire(watchdog):
    fired: list[int] = []
    cancelled = watchdog.schedule(0.05, lambda: fired.append(1))
    watchdog.cancel(cancelled)
    later = watchdog.schedule(0.2, lambda: fired.append(2))  # fires after the cancelled one's time
    poll(lambda: later.is_set(), timeout=5)
    assert fired == [2]
    assert not cancelled.is_set()


def test_deadlines_fire_in_order_of_time_not_of_scheduling(watchdog):
    fired: list[str] = []
    done = threading.Event()
    watchdog.schedule(0.3, lambda: (fired.append("late"), done.set()))
    watchdog.schedule(0.05, lambda: fired.append("early"))  # wakes the sleeping watchdog
    assert done.wait(5)
    assert fired == ["early", "late"]


def test_many_cancelled_deadlines_are_swept_from_the_heap(watchdog):
    deadlines = [watchdog.schedule(60, lambda: None) for _ in range(1000)]
    for deadline in deadlines:
        watchdog.cancel(deadline)
    assert watchdog.pending() == 0
    assert len(watchdog._heap) < 300  # the sweep is what this test is about


def test_a_closed_watchdog_stops_its_thread_and_fires_nothing():
    fired: list[int] = []
    dog = Watchdog(name="closing-watchdog")
    dog.schedule(0.2, lambda: fired.append(1))
    dog.close()
    assert not any(t.name == "closing-watchdog" for t in threading.enumerate())
    assert not dog.schedule(0.01, lambda: fired.append(2)).is_set()
    time.sleep(0.3)  # past both deadlines: nothing may fire (a negative needs a wait)
    assert fired == []


def test_a_failing_callback_does_not_stop_the_watchdog(watchdog):
    def broken() -> None:
        raise RuntimeError("boom")

    watchdog.schedule(0.01, broken)
    after = watchdog.schedule(0.05, lambda: None)
    poll(lambda: after.is_set(), timeout=5)


def test_a_deadline_too_far_to_wait_for_does_not_stop_the_watchdog(watchdog):
    # --timeout 1e11 passes the config (finite, positive); a Condition.wait that long raises
    # OverflowError, which ended the thread: no later deadline of the process fired
    watchdog.schedule(1e11, lambda: None)
    poll(lambda: watchdog._sleeping_until is not None, timeout=5)  # the thread went to wait
    soon = watchdog.schedule(0.05, lambda: None)
    poll(lambda: soon.is_set(), timeout=5)


def test_a_dripping_server_is_cut_at_the_deadline(dripping, watchdog):
    config = ProbeConfig(service_url=dripping.url, timeout=0.5)
    with PizzaClient(config, watchdog=watchdog) as client:
        started = time.monotonic()
        with pytest.raises(StepFailure) as failure:
            client.health()
        took = time.monotonic() - started
    assert failure.value.reason == "timeout"
    assert 0.5 <= took < 2.5, took  # the drip (a byte every 50 ms) would last 10 s


class LateWatchdog:
    """A watchdog whose thread marked the deadline fired (a cancel is then too late) but was
    preempted before its callback ran: the test runs it when it likes."""

    def schedule(self, seconds, callback):
        self.callback = callback
        deadline = Deadline(time.monotonic() + seconds, callback)
        deadline.fired = True
        return deadline

    def cancel(self, deadline) -> None:
        pass


def test_a_late_cut_does_not_land_on_the_next_requests_connection(watchdog):
    tracker = transport.SocketTracker()
    late = LateWatchdog()
    with transport.hard_deadline(tracker, 0.01, late):
        pass  # the request ended as its deadline fired
    ours, server = socket.socketpair()  # the next request, on the reused connection
    with ours, server:
        tracker.add(ours)
        with transport.hard_deadline(tracker, 10, watchdog):
            late.callback()  # the first request's cut runs only now
            ours.sendall(b"GET")  # raised BrokenPipeError: the cut shut this socket down
            assert server.recv(3) == b"GET"


def test_hard_deadline_without_a_watchdog_still_cuts(dripping):
    """recovery.py and handoff.py call it without one: a watchdog of its own, for the block."""
    session = transport.new_session()
    tracker = transport.track_sockets(session)
    started = time.monotonic()
    with transport.hard_deadline(tracker, 0.3) as cut:
        with pytest.raises(Exception):  # noqa: B017 (the cut surfaces as requests' or urllib3's)
            session.get(dripping.url, timeout=5).content  # noqa: B018
    assert cut.is_set()
    assert time.monotonic() - started < 3
    session.close()


def test_many_concurrent_requests_start_no_thread_each(watchdog):
    """16 requests at once, each cut at its deadline by the one watchdog: besides the 16
    workers and the server's thread, one thread more (the watchdog's), not one a request."""
    workers = 16
    threads_before = threading.active_count()
    dripping = Dripping()
    with ThreadPoolExecutor(workers) as pool:
        config = ProbeConfig(service_url=dripping.url, timeout=1.0)
        ready = threading.Barrier(workers + 1, timeout=10)
        counts: list[int] = []

        def one() -> str:
            with PizzaClient(config, watchdog=watchdog) as client:
                ready.wait()
                try:
                    client.health()
                except StepFailure as failure:
                    return failure.reason
                return "ok"

        futures = [pool.submit(one) for _ in range(workers)]
        ready.wait()
        poll(lambda: dripping.started >= workers, timeout=10)  # every request is in flight
        counts.append(threading.active_count())
        reasons = [future.result(timeout=10) for future in futures]
    dripping.close()
    assert reasons == ["timeout"] * workers
    # the server's thread, 16 workers and the watchdog's; a Timer per request would add 16
    assert counts[0] <= threads_before + 1 + workers + 1, (threads_before, counts)
    assert watchdog.pending() == 0


def test_requests_of_a_client_without_a_watchdog_share_one_thread(dripping):
    """A journey run on its own (``once``, the tests) has a watchdog of its own: one thread
    for all its requests, gone when the client closes."""
    before = {t.ident for t in threading.enumerate()}
    config = ProbeConfig(service_url=dripping.url, timeout=0.2)
    with PizzaClient(config) as client:
        for _ in range(3):
            with pytest.raises(StepFailure):
                client.health()
        started = [t for t in threading.enumerate() if t.ident not in before]
        assert [t.name for t in started if t.name.startswith("deadline")] == ["deadline-client"]
    poll(lambda: not any(t.name == "deadline-client" for t in threading.enumerate()), timeout=5)


def test_a_targets_connections_are_kept_across_journeys_and_reused_within_one(simulator):
    """One session and adapter for the target's journeys; connections reused within a journey
    (one to the service, one to the factory: 7 requests) and closed at its end."""
    accepted: list[int] = []
    original = socket.socket.connect
    journeys_thread = threading.current_thread()

    def counting_connect(sock, address):
        if threading.current_thread() is journeys_thread:  # not another test's leftover
            accepted.append(1)
        return original(sock, address)

    config = ProbeConfig(service_url=simulator.service_url, factory_url=simulator.factory_url)
    with JourneyRunner() as runner:
        run = runner.for_target()
        connections = run.keywords["connections"]
        session, adapter = connections.session, connections.session.get_adapter("http://x")
        socket.socket.connect = counting_connect  # type: ignore[method-assign]
        try:
            results = [run(config) for _ in range(3)]
        finally:
            socket.socket.connect = original  # type: ignore[method-assign]
        assert all(result.success for result in results), results
        assert connections.session is session
        assert connections.session.get_adapter("http://x") is adapter
        assert len(accepted) == 2 * 3, "two connections a journey, none kept to the next"
        assert not any(pool.pool and pool.pool.qsize() and any(
            conn is not None and conn.sock is not None for conn in list(pool.pool.queue))
            for pool in adapter.poolmanager.pools._container.values())
