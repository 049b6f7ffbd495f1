"""Unit tests of the client and the journey with ``responses``: every answer in the API
contract maps to the documented step and reason."""

from __future__ import annotations

import json

import pytest
import requests
import responses

from exporter import __version__
from exporter.config import ProbeConfig
from exporter.journey import run_journey
from exporter.parse import CHAOS_LINK_KEYS
from exporter.result import REASONS, STEPS

SVC = "http://pizza.test"
FACTORY = "https://factory.test"
LINK = "https://pizza-factory.cs329.click/api/support/0123456789abcdef0123456789abcdef/report/fedcba9876543210fedcba9876543210"
TOKEN = "tok-secret-123"
MENU = [
    {"id": 1, "title": "Veggie", "image": "pizza1.png", "price": 0.0038, "description": "A garden"},
    {"id": 4, "title": "Crusty", "image": "pizza4.png", "price": 0.0028, "description": "Dry"},
]
NEW_FRANCHISES = {"franchises": [{"id": 7, "name": "empty", "stores": []},
                                 {"id": 9, "name": "pizzaPocket", "stores": [{"id": 3, "name": "SLC"}]}],
                  "more": False}
OLD_FRANCHISES = NEW_FRANCHISES["franchises"]
ORDER_OK = {"order": {"franchiseId": 9, "storeId": 3, "items": [], "id": 278}, "jwt": "a.b.c"}


class FakeClock:
    """Monotonic time that moves only when a test moves it (each read adds a tick)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 0.001
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def config() -> ProbeConfig:
    return ProbeConfig(service_url=SVC, factory_url=FACTORY, password="pw-secret-456",
                       timeout=2, order_timeout=5, slow_threshold=10)


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add("GET", f"{SVC}/", json={"message": "welcome to JWT Pizza", "version": "20241120.055253"})
        rsps.add("PUT", f"{SVC}/api/auth", json={"user": {"id": 2, "name": "d", "email": "d@jwt.com",
                                                          "roles": [{"role": "diner"}]}, "token": TOKEN})
        rsps.add("GET", f"{SVC}/api/order/menu", json=MENU)
        rsps.add("GET", f"{SVC}/api/franchise", json=NEW_FRANCHISES)
        rsps.add("POST", f"{SVC}/api/order", json=ORDER_OK)
        rsps.add("POST", f"{FACTORY}/api/order/verify", json={"message": "valid", "payload": {}})
        rsps.add("DELETE", f"{SVC}/api/auth", json={"message": "logout successful"})
        yield rsps


def replace(rsps, method, url, **kwargs):
    rsps.replace(method, url, **kwargs)


def calls_to(rsps, method, url):
    return [c for c in rsps.calls if c.request.method == method and c.request.url.rstrip("/") == url.rstrip("/")]


def test_good_journey_succeeds_with_every_step_timed(api, config):
    clock = FakeClock()
    result = run_journey(config, clock=clock)
    assert result.success, result
    assert [s.name for s in result.steps] == list(STEPS)
    assert all(s.ok and s.status == 200 and s.duration > 0 for s in result.steps)
    assert result.failed_step is None and result.reason is None and result.chaos_link is None
    assert result.target_version == "20241120.055253"
    assert result.duration >= sum(s.duration for s in result.steps)


def test_order_uses_cheapest_item_first_store_one_item_and_bearer(api, config):
    run_journey(config)
    (order,) = calls_to(api, "POST", f"{SVC}/api/order")
    body = json.loads(order.request.body)
    assert body == {"franchiseId": 9, "storeId": 3,
                    "items": [{"menuId": 4, "description": "Crusty", "price": 0.0028}]}
    assert order.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert order.request.headers["User-Agent"] == f"pizza-probe/{__version__}"
    (logout,) = calls_to(api, "DELETE", f"{SVC}/api/auth")
    assert logout.request.headers["Authorization"] == f"Bearer {TOKEN}"
    (verify,) = calls_to(api, "POST", f"{FACTORY}/api/order/verify")
    assert json.loads(verify.request.body) == {"jwt": "a.b.c"}
    assert "Authorization" not in verify.request.headers  # the service token stays with the service
    login = calls_to(api, "PUT", f"{SVC}/api/auth")[0]
    assert json.loads(login.request.body) == {"email": "d@jwt.com", "password": "pw-secret-456"}


def test_old_franchise_shape_is_understood(api, config):
    replace(api, "GET", f"{SVC}/api/franchise", json=OLD_FRANCHISES)
    assert run_journey(config).success
    body = json.loads(calls_to(api, "POST", f"{SVC}/api/order")[0].request.body)
    assert (body["franchiseId"], body["storeId"]) == (9, 3)


@pytest.mark.parametrize("key", CHAOS_LINK_KEYS)
def test_fail_chaos_500_with_link_under_every_name(api, config, key):
    replace(api, "POST", f"{SVC}/api/order", status=500,
            json={"message": "Failed to fulfill order at factory", key: LINK})
    result = run_journey(config)
    assert (result.success, result.failed_step, result.reason, result.status) == (False, "order", "factory_error", 500)
    assert result.chaos_link is not None and result.chaos_link.reveal() == LINK
    assert result.chaos_link.key == key
    assert [s.name for s in result.steps][-1] == "logout"  # logout attempted after the failure
    assert "verify" not in [s.name for s in result.steps]


@pytest.mark.parametrize("key", CHAOS_LINK_KEYS)
def test_throttle_chaos_slow_200_with_link_under_every_name(api, config, key):
    clock = FakeClock()

    def slow_order(request):
        clock.advance(32)
        return 200, {}, json.dumps({**ORDER_OK, key: LINK})

    api.remove("POST", f"{SVC}/api/order")
    api.add_callback("POST", f"{SVC}/api/order", callback=slow_order)
    result = run_journey(config, clock=clock)
    assert (result.failed_step, result.reason, result.status) == ("order", "slow", 200)
    assert result.chaos_link.key == key
    order = [s for s in result.steps if s.name == "order"][0]
    assert not order.ok and order.duration >= 32
    assert [s.name for s in result.steps][-2:] == ["verify", "logout"]


def test_fast_200_with_link_is_chaos_link(api, config):
    replace(api, "POST", f"{SVC}/api/order", json={**ORDER_OK, "followLinkToEndChaos": LINK})
    result = run_journey(config, clock=FakeClock())
    assert (result.success, result.failed_step, result.reason) == (False, "order", "chaos_link")
    assert result.chaos_link is not None


def test_badjwt_chaos_verify_403(api, config):
    replace(api, "POST", f"{SVC}/api/order", json={**ORDER_OK, "followLinkToEndChaos": LINK})
    replace(api, "POST", f"{FACTORY}/api/order/verify", status=403, json={"message": "invalid"})
    result = run_journey(config)
    assert (result.failed_step, result.reason, result.status) == ("verify", "bad_jwt", 403)
    assert result.chaos_link is not None
    assert [s.name for s in result.steps][-1] == "logout"


def test_verify_200_that_is_not_valid_is_bad_jwt(api, config):
    replace(api, "POST", f"{FACTORY}/api/order/verify", json={"message": "invalid"})
    result = run_journey(config)
    assert (result.failed_step, result.reason) == ("verify", "bad_jwt")


CASES = [
    # (method, url, answer, step, reason, status)
    ("PUT", f"{SVC}/api/auth", dict(status=404, json={"message": "unknown user", "stack": "Error: ..."}),
     "login", "auth_error", 404),
    ("PUT", f"{SVC}/api/auth", dict(status=401, json={"message": "unauthorized"}), "login", "auth_error", 401),
    ("PUT", f"{SVC}/api/auth", dict(json={"user": {}}), "login", "bad_response", 200),
    ("GET", f"{SVC}/api/order/menu", dict(status=500, json={"message": "connect ECONNREFUSED", "stack": "..."}),
     "menu", "http_error", 500),
    ("GET", f"{SVC}/api/order/menu", dict(json=[]), "menu", "bad_response", 200),
    ("GET", f"{SVC}/api/order/menu", dict(status=401, json={"message": "unauthorized"}), "menu", "auth_error", 401),
    ("GET", f"{SVC}/api/franchise", dict(json={"franchises": [{"id": 1, "stores": []}], "more": False}),
     "franchises", "bad_response", 200),
    ("GET", f"{SVC}/api/franchise", dict(json={"unexpected": 1}), "franchises", "bad_response", 200),
    ("POST", f"{SVC}/api/order",
     dict(status=500, json={"message": "Chaos monkey", "stack": "Error: Chaos monkey\n at ..."}),
     "order", "http_error", 500),
    ("POST", f"{SVC}/api/order", dict(status=500, json={"message": "Failed to fulfill order at factory"}),
     "order", "factory_error", 500),
    ("POST", f"{SVC}/api/order", dict(status=500, json={"message": "No ID found"}), "order", "http_error", 500),
    ("POST", f"{SVC}/api/order", dict(status=401, json={"message": "unauthorized"}), "order", "auth_error", 401),
    ("POST", f"{SVC}/api/order", dict(json={"order": {"id": 1}}), "order", "bad_response", 200),
    ("POST", f"{FACTORY}/api/order/verify", dict(status=500, body="<html>oops</html>"), "verify", "http_error", 500),
    ("DELETE", f"{SVC}/api/auth", dict(status=401, json={"message": "unauthorized"}), "logout", "auth_error", 401),
    ("GET", f"{SVC}/", dict(status=404, json={"message": "unknown endpoint"}), "health", "http_error", 404),
    ("GET", f"{SVC}/", dict(status=302, headers={"Location": "http://elsewhere.test/"}, body=""),
     "health", "http_error", 302),
    # HTML instead of JSON, a truncated body, a body that is JSON but not UTF-8
    ("GET", f"{SVC}/api/order/menu", dict(body="<!doctype html><html>menu</html>", content_type="text/html"),
     "menu", "bad_response", 200),
    ("PUT", f"{SVC}/api/auth", dict(body='{"user": {"id": 2}, "token": "ab', content_type="application/json"),
     "login", "bad_response", 200),
    ("GET", f"{SVC}/api/franchise", dict(body=b'{"franchises": "\xff\xfe"}', content_type="application/json"),
     "franchises", "bad_response", 200),
    # transport failures
    ("GET", f"{SVC}/api/order/menu", dict(body=requests.exceptions.ReadTimeout("read timed out")),
     "menu", "timeout", None),
    ("POST", f"{SVC}/api/order", dict(body=requests.exceptions.ConnectTimeout("connect timed out")),
     "order", "timeout", None),
    ("GET", f"{SVC}/", dict(body=requests.exceptions.ConnectionError("[Errno 111] Connection refused")),
     "health", "connection_error", None),
    ("POST", f"{FACTORY}/api/order/verify", dict(body=requests.exceptions.SSLError("handshake")),
     "verify", "tls_error", None),
]


@pytest.mark.parametrize("method,url,answer,step,reason,status", CASES,
                         ids=[f"{c[3]}-{c[4]}-{c[5]}-{i}" for i, c in enumerate(CASES)])
def test_each_answer_maps_to_step_and_reason(api, config, method, url, answer, step, reason, status):
    replace(api, method, url, **answer)
    result = run_journey(config)
    assert reason in REASONS
    assert (result.success, result.failed_step, result.reason, result.status) == (False, step, reason, status)
    failed = [s for s in result.steps if not s.ok]
    assert failed[0].name == step and failed[0].reason == reason
    # no step after the failed one ran, except logout once a token exists
    names = [s.name for s in result.steps]
    after = names[names.index(step) + 1:]
    assert after in ([], ["logout"])
    if STEPS.index(step) > STEPS.index("login") and step != "logout":
        assert after == ["logout"]


def test_body_over_the_cap_by_content_length_is_bad_response(api):
    config = ProbeConfig(service_url=SVC, factory_url=FACTORY, max_body_bytes=4096)
    big = json.dumps(MENU * 200)
    replace(api, "GET", f"{SVC}/api/order/menu", body=big, content_type="application/json",
            headers={"Content-Length": str(len(big))})
    result = run_journey(config)
    assert (result.failed_step, result.reason) == ("menu", "bad_response")
    assert result.detail == f"body of {len(big)} bytes is over the 4096-byte cap"


def test_body_over_the_cap_without_content_length_is_bad_response(api):
    config = ProbeConfig(service_url=SVC, factory_url=FACTORY, max_body_bytes=4096)
    big = json.dumps(MENU * 200).encode()
    api.remove("GET", f"{SVC}/api/order/menu")
    api.add_callback("GET", f"{SVC}/api/order/menu",
                     callback=lambda req: (200, {}, big))
    result = run_journey(config)
    assert (result.failed_step, result.reason) == ("menu", "bad_response")
    assert result.detail == "body is over the 4096-byte cap"


def test_error_detail_never_carries_the_link_or_stack(api, config):
    replace(api, "POST", f"{SVC}/api/order", status=500,
            json={"message": f"boom, see {LINK}", "stack": "Error: at /srv/secret/path.js:1"})
    result = run_journey(config)
    assert "0123456789abcdef" not in result.detail and "fedcba98" not in result.detail
    assert "/srv/secret" not in result.detail
    assert result.detail.startswith("HTTP 500: boom")


def test_to_dict_and_repr_are_redacted(api, config):
    replace(api, "POST", f"{SVC}/api/order", status=500,
            json={"message": "Failed to fulfill order at factory", "followLinkToEndChaos": LINK})
    result = run_journey(config)
    text = json.dumps(result.to_dict()) + repr(result) + str(result.chaos_link)
    assert "0123456789abcdef" not in text and "fedcba9876543210" not in text
    assert "https://pizza-factory.cs329.click/api/support/***/report/***" in text
    assert "pw-secret-456" not in text and TOKEN not in text
    assert "pw-secret-456" not in repr(config)


def test_logout_failure_alone_fails_the_journey(api, config):
    replace(api, "DELETE", f"{SVC}/api/auth", status=500, json={"message": "db down"})
    result = run_journey(config)
    assert (result.success, result.failed_step, result.reason) == (False, "logout", "http_error")


def test_no_logout_without_a_token(api, config):
    replace(api, "PUT", f"{SVC}/api/auth", status=404, json={"message": "unknown user"})
    run_journey(config)
    assert calls_to(api, "DELETE", f"{SVC}/api/auth") == []


def test_step_timeouts_are_passed_to_requests(api, config):
    seen = {}
    run_journey(config)
    for call in api.calls:
        key = (call.request.method, call.request.url)
        seen[key] = call.request.req_kwargs["timeout"]
    assert seen[("POST", f"{SVC}/api/order")] == 5
    assert seen[("PUT", f"{SVC}/api/auth")] == 2
