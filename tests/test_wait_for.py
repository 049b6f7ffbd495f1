"""runtime.wait_for: the main thread sleeps on the signal wakeup descriptor instead of waking
twice a second, and still acts on a signal at once, whichever thread the kernel gave it to."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from exporter.runtime import wait_for


@pytest.fixture
def flags():
    stop, hangup = threading.Event(), threading.Event()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    signal.signal(signal.SIGUSR1, lambda signum, frame: stop.set())
    signal.signal(signal.SIGUSR2, lambda signum, frame: hangup.set())
    yield stop, hangup
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_signal_sent_from_another_thread_ends_the_wait_at_once(flags):
    stop, hangup = flags
    hangups: list[float] = []
    started = time.monotonic()

    def send() -> None:
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGUSR2)  # the work of a SIGHUP runs in the waiting thread
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGUSR1)

    threading.Thread(target=send, daemon=True).start()
    wait_for(stop, hangup, lambda: hangups.append(time.monotonic() - started), poll=30)
    took = time.monotonic() - started
    assert took < 5, took  # the poll is 30 s: only the wakeup descriptor can end it this soon
    assert len(hangups) == 1 and hangups[0] < 5
    assert signal.set_wakeup_fd(-1) == -1  # restored: no descriptor left behind


def test_a_flag_set_without_a_signal_is_seen_within_the_poll(flags):
    stop, _ = flags
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    started = time.monotonic()
    wait_for(stop, poll=0.2)
    assert time.monotonic() - started < 3
    timer.join()


def test_outside_the_main_thread_it_polls(flags):
    stop, _ = flags
    done = threading.Event()

    def waiter() -> None:
        wait_for(stop)
        done.set()

    threading.Thread(target=waiter, daemon=True).start()
    stop.set()
    assert done.wait(5)
