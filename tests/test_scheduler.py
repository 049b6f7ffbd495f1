import itertools
import random
import threading
import time

from exporter.result import JourneyResult
from exporter.scheduler import ProbeLoop

from conftest import poll


def make_result():
    return JourneyResult(True, time.time(), 0.0, ())


def test_never_two_journeys_at_once_and_long_ones_delay_the_next():
    running = threading.Semaphore(1)
    spans = []

    def journey():
        assert running.acquire(blocking=False), "two journeys overlapped"
        start = time.monotonic()
        time.sleep(0.15 if len(spans) == 1 else 0.01)  # the second journey outlasts the interval
        spans.append((start, time.monotonic()))
        running.release()
        return make_result()

    loop = ProbeLoop(journey, interval=0.05, rng=random.Random(1), max_jitter=0.0)
    thread = loop.start()
    poll(lambda: len(spans) >= 4, timeout=10, what="four journeys")
    loop.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    for (s1, e1), (s2, _) in itertools.pairwise(spans):
        assert s2 >= e1  # no overlap
        assert s2 - s1 >= 0.05 - 0.005  # not faster than the interval
    assert spans[2][0] >= spans[1][1]  # the long journey delayed the next one


def test_observers_see_every_result_and_a_failing_observer_does_not_stop_the_loop():
    seen = []

    def broken(result):
        raise RuntimeError("observer bug")

    loop = ProbeLoop(make_result, interval=0.01, observers=[broken, seen.append], max_jitter=0)
    loop.run_forever(max_journeys=3)
    assert len(seen) == 3 and loop.journeys == 3


def test_a_crashing_journey_is_logged_and_probing_goes_on():
    calls = []

    def journey():
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("bug")
        return make_result()

    loop = ProbeLoop(journey, interval=0.01, max_jitter=0)
    loop.run_forever(max_journeys=2)
    assert len(calls) == 3 and loop.journeys == 2


def test_stop_interrupts_the_wait():
    loop = ProbeLoop(make_result, interval=60)
    thread = loop.start()
    poll(lambda: loop.journeys == 1, what="first journey")
    loop.stop()
    thread.join(timeout=2)
    assert not thread.is_alive()
