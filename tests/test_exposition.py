"""``/metrics`` as prometheus_client's exposition serves it, on a live ``serve`` over real HTTP:
gzip on ``Accept-Encoding``, the ``name[]`` filter, OpenMetrics on ``Accept``; and the same on
the sidecar's ``/metrics`` and fleet mode's ``/probe``."""

from __future__ import annotations

import gzip
import socket

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from conftest import poll, target_args, value

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def families(text: str) -> dict[str, list]:
    """{family name: sorted samples} of a text-format exposition."""
    return {f.name: sorted((s.name, sorted(s.labels.items())) for s in f.samples)
            for f in text_string_to_metric_families(text)}


def raw_get(url: str, **headers: str) -> requests.Response:
    """A GET whose body is left as sent: requests would undo gzip by itself."""
    return requests.get(url, headers={"Accept-Encoding": "identity", **headers}, timeout=5,
                        stream=True)


@pytest.fixture
def exporter(simulator, processes):
    process = processes.start("serve", *target_args(simulator), "--interval", "0.2")
    poll(lambda: (value(process.metrics(), "pizza_probe_orders_total", result="success") or 0) >= 1,
         what="a first journey")
    return process


def test_gzip_answers_the_same_families_compressed(exporter):
    plain = raw_get(exporter.url + "/metrics")
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    zipped = raw_get(exporter.url + "/metrics", **{"Accept-Encoding": "gzip"})
    assert zipped.status_code == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    body = zipped.raw.read()
    assert int(zipped.headers["Content-Length"]) == len(body)
    unzipped = gzip.decompress(body).decode()
    assert families(unzipped).keys() == families(plain.raw.read().decode()).keys()
    assert "pizza_probe_step_duration_seconds" in families(unzipped)
    assert len(body) < len(unzipped) / 3  # it was compressed, not merely labelled so


def test_name_filter_answers_only_the_families_named(exporter):
    answer = requests.get(exporter.url + "/metrics", params={"name[]": "pizza_probe_success"}, timeout=5)
    assert answer.status_code == 200
    assert list(families(answer.text)) == ["pizza_probe_success"], answer.text
    both = requests.get(exporter.url + "/metrics", timeout=5, params=[
        ("name[]", "pizza_probe_success"), ("name[]", "pizza_probe_orders_total")])
    assert set(families(both.text)) == {"pizza_probe_success", "pizza_probe_orders"}
    whole = requests.get(exporter.url + "/metrics", timeout=5)
    assert len(families(whole.text)) > 5


def test_openmetrics_is_answered_when_asked_for(exporter):
    answer = requests.get(exporter.url + "/metrics", headers={"Accept": OPENMETRICS}, timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert answer.text.endswith("# EOF\n")
    names = {f.name for f in om_families(answer.text)}  # the strict OpenMetrics parser
    assert {"pizza_probe_success", "pizza_probe_orders", "pizza_probe_duration_seconds"} <= names
    text = requests.get(exporter.url + "/metrics", timeout=5)
    assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in text.text


def test_head_answers_the_headers_without_a_body(exporter):
    answer = requests.head(exporter.url + "/metrics", timeout=5,
                           headers={"Accept-Encoding": "gzip", "Accept": OPENMETRICS})
    assert answer.status_code == 200 and answer.content == b""
    assert answer.headers["Content-Encoding"] == "gzip"
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")


def test_the_sidecars_metrics_negotiate_the_same(processes):
    sidecar = processes.start("sidecar", "--dry-run", "--exporter-url", "",
                              env={"PIZZA_RECOVERY_WEBHOOK_TOKEN": "sidecar-token-0123456789"})
    zipped = raw_get(sidecar.url + "/metrics", **{"Accept-Encoding": "gzip", "Accept": OPENMETRICS})
    assert zipped.headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(zipped.raw.read()).decode()
    assert text.endswith("# EOF\n")
    assert "pizza_recovery_enabled" in {f.name for f in om_families(text)}
    only = requests.get(sidecar.url + "/metrics", params={"name[]": "pizza_recovery_enabled"},
                        timeout=5)
    assert list(families(only.text)) == ["pizza_recovery_enabled"]


def test_probe_answers_gzip_and_openmetrics_too(simulator, processes):
    exporter = processes.start("serve", "--target", f"shop={simulator.service_url}",
                               "--factory-url", simulator.factory_url, "--interval", "1h")
    url = exporter.url + "/probe"
    params = {"target": simulator.service_url}
    zipped = requests.get(url, params=params, timeout=30, stream=True, headers={
        "Accept-Encoding": "gzip", "Accept": OPENMETRICS})
    assert zipped.status_code == 200, zipped.text
    assert zipped.headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(zipped.raw.read()).decode()
    assert text.endswith("# EOF\n")
    assert {"pizza_probe_success", "probe_success"} <= {f.name for f in om_families(text)}


def raw_answer(url: str, head: str) -> bytes:
    """The whole answer to ``head`` sent as is (requests refuses odd header values)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\n{head}Connection: close\r\n\r\n"
                     .encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("accept", [
    "application/openmetrics-text; version=abc",  # prometheus_client compared "abc" with 1
    "text/plain; version=1.x",
    "application/openmetrics-text; version=1.0.0<script>",
])
def test_an_odd_accept_version_is_answered_in_the_text_format(exporter, accept):
    # Each of these ended the connection without an answer (a TypeError in the exposition).
    answer = raw_answer(exporter.url, f"Accept: {accept}\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"Content-Type: text/plain; version=0.0.4" in head
    assert b"pizza_probe_success" in body


def test_a_folded_accept_header_is_never_copied_into_the_answers_headers(exporter):
    # The version was copied into Content-Type as sent: with an obsolete line fold, the answer
    # carried the client's line break and a header line of the client's choosing.
    accept = "application/openmetrics-text; version=2.0.0\r\n Set-Cookie: pwned=1\r\n"
    answer = raw_answer(exporter.url, f"Accept: {accept}")
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"pwned" not in head
    assert all(line[:1] not in (b" ", b"\t") for line in head.split(b"\r\n")), head


@pytest.mark.parametrize("refused", ["gzip;q=0, identity", "identity, GZIP; q=0.000"])
def test_gzip_refused_with_q_zero_is_not_sent(exporter, refused):
    # RFC 9110: q=0 means "not acceptable"; prometheus_client read any mention of gzip as yes.
    answer = raw_get(exporter.url + "/metrics", **{"Accept-Encoding": refused})
    assert answer.status_code == 200 and "Content-Encoding" not in answer.headers
    assert "pizza_probe_success" in answer.raw.read().decode()
    assert raw_get(exporter.url + "/metrics", **{"Accept-Encoding": "gzip;q=0.5"}).headers[
        "Content-Encoding"] == "gzip"
