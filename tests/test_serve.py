"""``pizza-probe serve`` as a real process against a real simulator on 127.0.0.1."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest
import requests

from conftest import http_get, poll, target_args, value
from conftest import set_chaos as chaos


@pytest.fixture
def serve(processes):
    return lambda *args, env=None: processes.start("serve", *args, env=env)


def test_counters_move_when_the_target_starts_failing(simulator, serve):
    # a user of its own, so the password is a unique string a grep can find
    password = "probe-pass-7f3a9c"
    registered = requests.post(f"{simulator.service_url}/api/auth", timeout=5,
                               json={"name": "probe", "email": "probe@jwt.com", "password": password})
    assert registered.status_code == 200
    exporter = serve(*target_args(simulator), "--interval", "0.2",
                     env={"PIZZA_PROBE_EMAIL": "probe@jwt.com", "PIZZA_PROBE_PASSWORD": password})
    poll(lambda: value(exporter.metrics(), "pizza_probe_orders_total", result="success") >= 2,
         what="two good journeys")
    text = exporter.metrics()
    assert value(text, "pizza_probe_success") == 1
    assert value(text, "pizza_probe_target_info", version="20241120.055253",
                 factory=simulator.factory_url) == 1

    chaos(simulator, "fail")
    poll(lambda: (value(exporter.metrics(), "pizza_probe_failures_total", step="order",
                        reason="factory_error") or 0) >= 2, what="failed orders to be counted")
    text = exporter.metrics()
    assert value(text, "pizza_probe_success") == 0
    assert value(text, "pizza_probe_chaos_link_seen") == 1
    assert value(text, "pizza_probe_consecutive_failures") >= 2
    assert value(text, "pizza_probe_orders_total", result="failure") >= 2
    # the link the probe saw, straight from the service, to grep for its secret parts
    token = requests.put(f"{simulator.service_url}/api/auth", timeout=5,
                         json={"email": "d@jwt.com", "password": "diner"}).json()["token"]
    link = requests.post(f"{simulator.service_url}/api/order", timeout=5,
                         headers={"Authorization": f"Bearer {token}"},
                         json={"franchiseId": 1, "storeId": 1,
                               "items": [{"menuId": 1, "description": "x", "price": 1}]}
                         ).json()["followLinkToEndChaos"]
    fix_code = link.rsplit("/", 1)[1]

    chaos(simulator, "none")
    good_before = value(text, "pizza_probe_orders_total", result="success")
    poll(lambda: value(exporter.metrics(), "pizza_probe_success") == 1
         and value(exporter.metrics(), "pizza_probe_orders_total", result="success") > good_before,
         what="recovery to show")
    assert value(exporter.metrics(), "pizza_probe_consecutive_failures") == 0

    status, page = http_get(exporter.url + "/")
    assert status == 200 and "/metrics" in page and "failure at order: factory_error" in page
    assert http_get(exporter.url + "/healthz") == (200, "ok\n")

    logs = exporter.logs()
    assert "reason=factory_error" in logs and "chaos_link=http://127.0.0.1:" in logs
    tokens = list(simulator.service.tokens) + [token]
    everything = logs + exporter.metrics() + page
    for secret in [password, simulator.factory.api_key, fix_code, *tokens]:
        assert secret not in everything

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run the tests through 'make test'"
    check = subprocess.run([promtool, "check", "metrics"], input=exporter.metrics().encode(),
                           capture_output=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_scrapes_answer_and_a_signal_stops_within_a_second_during_a_32s_order(make_simulator, serve, sig):
    sim = make_simulator(throttle_delay=32)
    exporter = serve(*target_args(sim), "--interval", "0.2")
    poll(lambda: value(exporter.metrics(), "pizza_probe_orders_total", result="success") >= 1,
         what="a good journey")
    chaos(sim, "throttle")
    orders_before = len(sim.service.orders)
    poll(lambda: len(sim.service.orders) > orders_before, what="an order to hang in throttle")
    started = time.monotonic()
    status, _ = http_get(exporter.url + "/metrics", timeout=2)
    assert status == 200 and time.monotonic() - started < 2
    started = time.monotonic()
    exporter.stop(sig)
    assert time.monotonic() - started < 3  # a stop that waited for the order would take ~32 s
    assert exporter.proc.returncode == 0
    assert "Traceback" not in exporter.logs()
