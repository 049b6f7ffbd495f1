"""Exemplars: each observation of the journey's durations carries its ``journey_id`` and the
service's ``order_id``, to follow a slow or failed order into the service's own logs and
database; no secret can ride on one, whatever the server answers."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families

from exporter.httpserver import BackgroundServer, QuietHandler
from exporter.metrics import ProbeMetrics, journey_exemplar
from exporter.result import JourneyResult, StepResult

from conftest import poll, target_args
from promstack import Prometheus

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
JOURNEY_ID = re.compile(r"[0-9a-f]{16}")


def exemplars(text: str, family: str, **labels: str) -> list[dict[str, str]]:
    """The exemplar labels on the buckets of ``family`` whose labels include ``labels``."""
    found = []
    for metric in om_families(text):
        if metric.name != family:
            continue
        for sample in metric.samples:
            if (sample.name.endswith("_bucket") and sample.exemplar is not None
                    and labels.items() <= sample.labels.items()):
                found.append(dict(sample.exemplar.labels))
    return found


def scrape_openmetrics(url: str) -> str:
    answer = requests.get(url + "/metrics", headers={"Accept": OPENMETRICS}, timeout=5)
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
    return answer.text


def test_a_real_order_id_from_the_simulator_is_an_exemplar_on_a_live_serve(simulator, processes):
    exporter = processes.start("serve", *target_args(simulator), "--interval", "0.2")

    def order_exemplars():
        found = exemplars(scrape_openmetrics(exporter.url), "pizza_probe_step_duration_seconds",
                          step="order")
        return [e for e in found if "order_id" in e]

    found = poll(order_exemplars, what="an order exemplar with an order id")
    placed = {str(order["id"]) for order in simulator.service.orders}
    for exemplar in found:
        assert set(exemplar) == {"journey_id", "order_id"}
        assert exemplar["order_id"] in placed, (exemplar, placed)
        assert JOURNEY_ID.fullmatch(exemplar["journey_id"])
    # the whole journey's histogram carries them too
    text = scrape_openmetrics(exporter.url)
    whole = exemplars(text, "pizza_probe_duration_seconds")
    assert whole and all(e["order_id"] in placed and JOURNEY_ID.fullmatch(e["journey_id"])
                         for e in whole)
    # and the journey's log line names both: an exemplar leads to its log line
    exemplar = found[0]
    lines = [line for line in exporter.logs().splitlines()
             if f"journey_id={exemplar['journey_id']}" in line]
    assert len(lines) == 1 and f"order_id={exemplar['order_id']}" in lines[0], lines
    # the text format (no exemplars in it) is unchanged for scrapers that do not ask
    plain = requests.get(exporter.url + "/metrics", timeout=5).text
    assert "journey_id" not in plain and "# EOF" not in plain


# --- a hostile service cannot put a secret on an exemplar -------------------------------------

TOKEN = "90210777123456"  # digits: a token that could pass for an order id


class HostileService:
    """A JWT Pizza service (and factory) on loopback that answers every step as documented but
    gives, as the order's id, whatever ``order_id(password)`` makes of the password it was sent."""

    def __init__(self, order_id) -> None:
        outer = self
        self.passwords: list[str] = []

        class Handler(QuietHandler):
            def _json(self, body) -> None:
                self.send_body(200, json.dumps(body).encode(), "application/json")

            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_GET(self) -> None:
                if self.path == "/":
                    self._json({"message": "welcome to JWT Pizza", "version": "1"})
                elif self.path == "/api/order/menu":
                    self._json([{"id": 1, "title": "Veggie", "image": "v.png", "price": 0.0038,
                                 "description": "veggie"}])
                elif self.path == "/api/franchise":
                    self._json({"franchises": [{"id": 1, "name": "f", "stores": [
                        {"id": 1, "name": "s"}]}], "more": False})
                else:
                    self.send_body(404, b'{"message":"unknown endpoint"}', "application/json")

            def do_PUT(self) -> None:  # login
                password = self._body()["password"]
                outer.passwords.append(password)
                self._json({"user": {"id": 1, "name": "d", "email": "d@jwt.com",
                                     "roles": [{"role": "diner"}]}, "token": TOKEN})

            def do_POST(self) -> None:
                body = self._body()
                if self.path == "/api/order/verify":
                    self._json({"message": "valid", "payload": {}})
                else:
                    self._json({"order": {**body, "id": order_id(outer.passwords[-1])},
                                "jwt": "a.b.c"})

            def do_DELETE(self) -> None:
                self._json({"message": "logout successful"})

        self.server = BackgroundServer("127.0.0.1", 0, Handler).start()
        self.url = self.server.url()

    def stop(self) -> None:
        self.server.stop()


def _as_number(password: str):
    return int(password) if password.isdigit() else password


@pytest.mark.parametrize("password, order_id, journey_ok", [
    ("31415926535", _as_number, True),  # a password of digits, echoed as the id
    ("2718281828", lambda p: int("9" + p + "9"), True),  # the password inside a longer id
    ("4242", lambda p: int(TOKEN), True),  # the login token echoed as the id
    ("hunter2-secret", _as_number, False),  # not a number: the order answer is refused
], ids=["password", "password-inside", "token", "not-a-number"])
def test_a_hostile_server_cannot_put_a_secret_on_an_exemplar(password, order_id, journey_ok,
                                                             processes):
    hostile = HostileService(order_id)
    try:
        exporter = processes.start("serve", "--service-url", hostile.url, "--factory-url",
                                   hostile.url, "--interval", "0.2",
                                   env={"PIZZA_PROBE_PASSWORD": password})
        result = "success" if journey_ok else "failure"

        def journeys_done():
            text = scrape_openmetrics(exporter.url)
            return text if f'pizza_probe_orders_total{{result="{result}"}} 2' in text else None

        text = poll(journeys_done, what=f"two journeys with result {result}")
    finally:
        hostile.stop()
    assert hostile.passwords and set(hostile.passwords) == {password}  # it was sent the password
    order = exemplars(text, "pizza_probe_step_duration_seconds", step="order")
    whole = exemplars(text, "pizza_probe_duration_seconds")
    assert order and whole
    for exemplar in order + whole:
        assert set(exemplar) == {"journey_id"}, exemplar  # the id was left out, the journey kept
    everything = text + exporter.logs()
    assert password not in everything and TOKEN not in everything


# --- the exemplar's bounds --------------------------------------------------------------------

def result_with(order_id: str | None, journey_id: str = "0123456789abcdef") -> JourneyResult:
    return JourneyResult(True, 1_700_000_000.0, 1.5,
                         (StepResult("order", True, 0.7, 200),), order_id=order_id,
                         journey_id=journey_id)


@pytest.mark.parametrize("order_id, kept", [
    ("278", True), ("9" * 20, True), ("ord_A-9", True), ("x" * 40, True),
    ("x" * 41, False), ("12 34", False), ("12\n34", False), ("ünï", False), ("", False),
    ("a=b", False), ("a\"}", False), (None, False),
])
def test_only_a_bounded_order_id_shape_is_kept(order_id, kept):
    exemplar = journey_exemplar(result_with(order_id))
    assert ("order_id" in exemplar) == kept
    assert exemplar["journey_id"] == "0123456789abcdef"


def test_the_largest_exemplar_fits_openmetrics_128_characters():
    registry = CollectorRegistry()
    metrics = ProbeMetrics(registry)
    largest = result_with("9" * 40, journey_id="f" * 40)
    exemplar = journey_exemplar(largest)
    assert sum(len(k) + len(v) for k, v in exemplar.items()) <= 128
    metrics.record(largest)  # prometheus_client raises past 128
    text = openmetrics_latest(registry).decode()
    assert exemplars(text, "pizza_probe_step_duration_seconds", step="order") == [exemplar]
    assert exemplars(text, "pizza_probe_duration_seconds") == [exemplar]


def test_each_journey_has_an_id_of_its_own():
    ids = {result_with(None, journey_id=JourneyResult(True, 0.0, 0.0, ()).journey_id).journey_id
           for _ in range(50)}
    assert len(ids) == 50 and all(JOURNEY_ID.fullmatch(i) for i in ids)


# --- a real Prometheus stores them ------------------------------------------------------------

class ExemplarPrometheus(Prometheus):
    extra_flags = ("--enable-feature=exemplar-storage",)

    def exemplars(self, expr: str, since: float) -> list[dict]:
        answer = requests.get(self.url + "/api/v1/query_exemplars", timeout=10, params={
            "query": expr, "start": since, "end": time.time() + 60}).json()
        assert answer.get("status") == "success", answer
        return [exemplar for series in answer["data"] for exemplar in series["exemplars"]]


def test_prometheus_with_exemplar_storage_returns_the_order_id(simulator, processes, tmp_path):
    since = time.time() - 60
    exporter = processes.start("serve", *target_args(simulator), "--interval", "0.5")
    prometheus = ExemplarPrometheus(tmp_path, {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "pizza-probe", "scrape_interval": "1s",
                            "static_configs": [{"targets": [exporter.url.split("//", 1)[1]]}]}],
    })
    try:
        found = poll(lambda: [e["labels"] for e in prometheus.exemplars(
            'pizza_probe_step_duration_seconds_bucket{step="order"}', since)
            if "order_id" in e["labels"]], timeout=20, what="an order exemplar in Prometheus")
    finally:
        prometheus.stop()
    placed = {str(order["id"]) for order in simulator.service.orders}
    assert all(labels["order_id"] in placed and JOURNEY_ID.fullmatch(labels["journey_id"])
               for labels in found), (found, placed)
