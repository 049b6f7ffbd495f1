"""The simulator against the section "Measured against the real service and factory" of
``shared/jwt-pizza-api.md``: one test (or more) per fact, over real HTTP on loopback.

The facts the simulator deliberately does not follow are said in ``simulate --help``: chaos
switched at once (the real factory schedules it for the next day) and the course exercise's
chaos monkey, which a student's fork may have."""

from __future__ import annotations

import base64
import json
import re
import time
from urllib.parse import urlsplit

import pytest
import requests

from exporter.simulator import BADJWT_TOKEN, SERVICE_VERSION

from conftest import set_chaos

DINER = {"email": "d@jwt.com", "password": "diner"}
TIMEOUT = 5


def call(method: str, url: str, *, token: str | None = None, verify=True, headers=None,
         **kwargs):
    headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    with requests.Session() as session:
        session.trust_env = False
        return session.request(method, url, headers=headers, timeout=TIMEOUT, verify=verify,
                               allow_redirects=False, **kwargs)


def login(sim, body=DINER) -> str:
    answer = call("PUT", sim.service_url + "/api/auth", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def order(sim, token: str):
    body = {"franchiseId": 1, "storeId": 1,
            "items": [{"menuId": 1, "description": "Veggie", "price": 0.0038}]}
    return call("POST", sim.service_url + "/api/order", token=token, json=body)


def segment(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the service ---------------------------------------------------------------------------

def test_an_empty_password_logs_in_as_the_real_login_does(simulator):
    """The real login skips the password check when the password is empty."""
    answer = call("PUT", simulator.service_url + "/api/auth",
                  json={"email": "d@jwt.com", "password": ""})
    assert answer.status_code == 200 and answer.json()["user"]["email"] == "d@jwt.com"
    wrong = call("PUT", simulator.service_url + "/api/auth",
                 json={"email": "d@jwt.com", "password": "wrong"})
    assert wrong.status_code == 404 and wrong.json()["message"] == "unknown user"


def test_the_service_names_its_factory_at_api_docs(simulator):
    answer = call("GET", simulator.service_url + "/api/docs")
    assert answer.status_code == 200
    data = answer.json()
    assert set(data) == {"version", "endpoints", "config"}
    assert data["version"] == SERVICE_VERSION and isinstance(data["endpoints"], list)
    assert data["config"] == {"factory": simulator.factory_url, "db": "127.0.0.1"}


def test_factory_unreachable_answers_500_fetch_failed(make_simulator):
    sim = make_simulator(factory_unreachable=True)
    answer = order(sim, login(sim))
    assert answer.status_code == 500
    data = answer.json()
    assert data["message"] == "fetch failed" and "stack" in data
    assert not set(data) - {"message", "stack"}  # no chaos link: it is no chaos mode
    assert len(sim.service.orders) == 1  # written to the DB before the factory was called
    sim.service.factory_reachable = True  # the network is back
    assert order(sim, login(sim)).status_code == 200


def test_odd_inputs_answer_as_the_real_service(simulator):
    assert call("PUT", simulator.service_url + "/api/auth", json={}).status_code == 500
    assert order_with(simulator, {}).status_code == 500


def order_with(sim, body):
    return call("POST", sim.service_url + "/api/order", token=login(sim), json=body)


def test_the_service_sends_express_headers(simulator):
    answer = call("GET", simulator.service_url + "/")
    assert answer.headers["X-Powered-By"] == "Express"
    assert answer.headers["Access-Control-Allow-Origin"]
    assert re.fullmatch(r'W/"[0-9a-f]+-[A-Za-z0-9+/]{27}"', answer.headers["ETag"])
    assert answer.headers["Keep-Alive"] == "timeout=5"
    # the same body, the same ETag; another body, another
    assert call("GET", simulator.service_url + "/").headers["ETag"] == answer.headers["ETag"]
    menu = call("GET", simulator.service_url + "/api/order/menu")
    assert menu.headers["ETag"] != answer.headers["ETag"]


# --- the factory ---------------------------------------------------------------------------

def test_a_good_pizza_jwt_is_rs256_with_a_kid_and_iat_exp_iss(simulator):
    before = int(time.time())
    data = order(simulator, login(simulator)).json()
    head, body, signature = data["jwt"].split(".")
    header = json.loads(segment(head))
    assert header["alg"] == "RS256" and isinstance(header["kid"], str) and header["kid"]
    claims = json.loads(segment(body))
    assert {"iat", "exp", "iss", "vendor", "diner", "order"} <= set(claims)
    assert before <= claims["iat"] <= time.time() + 1 < claims["exp"]
    assert len(segment(signature)) == 256  # a 2048-bit RSA signature
    verified = call("POST", simulator.factory_url + "/api/order/verify", json={"jwt": data["jwt"]})
    assert verified.status_code == 200 and verified.json()["message"] == "valid"
    assert verified.json()["payload"]["order"]["id"] == data["order"]["id"]


def test_a_jwt_signed_by_another_factory_does_not_verify(make_simulator):
    one, other = make_simulator(), make_simulator()
    jwt = order(one, login(one)).json()["jwt"]
    answer = call("POST", other.factory_url + "/api/order/verify", json={"jwt": jwt})
    assert answer.status_code == 403 and answer.json() == {"message": "invalid"}


def test_badjwt_answers_one_fixed_stale_token_whose_header_does_not_decode(simulator):
    set_chaos(simulator, "badjwt")
    token = login(simulator)
    first, second = order(simulator, token).json(), order(simulator, token).json()
    assert first["jwt"] == second["jwt"] == BADJWT_TOKEN
    assert BADJWT_TOKEN.startswith("deadxe6M") and BADJWT_TOKEN.count(".") == 2
    with pytest.raises(ValueError):  # UnicodeDecodeError or JSONDecodeError
        json.loads(segment(BADJWT_TOKEN.split(".")[0]))
    assert "followLinkToEndChaos" in first
    answer = call("POST", simulator.factory_url + "/api/order/verify", json={"jwt": first["jwt"]})
    assert answer.status_code == 403


def test_an_unknown_key_answers_200_no_chaos_and_ends_nothing(simulator):
    set_chaos(simulator, "fail")
    token = login(simulator)
    link = order(simulator, token).json()["followLinkToEndChaos"]
    code = link.rsplit("/", 1)[1]
    unknown = f"{simulator.factory_url}/api/support/{'0' * 32}/report/{code}"
    answer = call("GET", unknown)
    assert answer.status_code == 200
    assert answer.json() == {"message": "No chaos currently executing"}
    assert simulator.factory.mode == "fail"  # chaos goes on
    assert order(simulator, token).status_code == 500


def test_the_factory_root_is_a_404(simulator):
    assert call("GET", simulator.factory_url + "/").status_code == 404


def test_verify_with_invalid_json_is_a_500_without_stack(simulator):
    answer = call("POST", simulator.factory_url + "/api/order/verify", data=b"{not json",
                  headers={"Content-Type": "application/json"})
    assert answer.status_code == 500 and "stack" not in answer.json()


# --- the factory behind TLS ----------------------------------------------------------------

def test_behind_tls_the_link_is_https_with_no_port(make_tls_simulator):
    sim = make_tls_simulator()
    host = urlsplit(sim.factory_url).hostname
    assert sim.factory_url == f"https://{host}"
    set_chaos_tls(sim, "fail")
    token = login(sim)
    link = order(sim, token).json()["followLinkToEndChaos"]
    assert re.fullmatch(rf"https://{re.escape(host)}/api/support/[0-9a-f]{{32}}/report/[0-9a-f]{{32}}",
                        link), link
    with pytest.raises(requests.exceptions.SSLError):  # a private CA: not trusted by default
        call("GET", link, verify=True)
    assert sim.factory.link_calls == 0  # the handshake failed before any request
    answer = call("GET", link, verify=sim.ca_file)
    assert answer.json() == {"message": "Problem resolved. Pizza is back on the menu!"}
    assert call("GET", link, verify=sim.ca_file).json() == {
        "message": "No chaos currently executing"}
    assert call("GET", sim.service_url + "/api/docs").json()["config"]["factory"] == sim.factory_url


def set_chaos_tls(sim, mode: str) -> None:
    answer = call("PUT", f"{sim.factory_url}/api/vendor/chaos/{mode}", token=sim.factory.vendor_key,
                  verify=sim.ca_file)
    assert answer.status_code == 200, answer.text
