"""Property tests: no input makes a parser raise anything but its documented error, and no
output carries a secret part of a recovery link.

Every parser here reads data an untrusted party controls (the target's answers, the factory's
link, Alertmanager's webhook, the exporter's hand-off). Each property states what the parser
may do with *any* input: return a value of its documented type (with the invariants checked
below) or raise its one documented exception.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import string

import pytest
import requests
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from exporter import parse
from exporter.alertmanager import AlertEvent, WebhookError, parse_webhook
from exporter.client import PizzaClient
from exporter.config import ConfigError, ProbeConfig
from exporter.handoff import ProbeReport
from exporter.recovery import DEFAULT_ALLOWED_HOSTS, RESULTS, LinkOutcome, LinkPolicy, classify_answer
from exporter.redact import MASK, RecoveryLink, redact_text, redact_url
from exporter.result import REASONS, StepFailure

# Local runs explore new examples every time; CI (CI=true) runs a fixed seed, so that a rare
# example can fail a developer's run, never a landing.
SETTINGS = settings(max_examples=100, deadline=None, database=None,
                    derandomize=bool(os.environ.get("CI")),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# --- strategies: arbitrary JSON ------------------------------------------------------------

# Keys the parsers look for: arbitrary dicts use them often, so the deeper branches are reached.
KNOWN_KEYS = (
    "version", "token", "user", "id", "price", "title", "franchises", "stores", "more",
    "message", "msg", "order", "jwt", *parse.CHAOS_LINK_KEYS,
    "seq", "success", "started_at", "failed_step", "reason", "detail", "chaos_link",
    "chaos_link_key", "first_failure_at", "alerts", "status", "labels", "startsAt",
    "fingerprint", "alertname",
)

ODD_TEXT = st.one_of(
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Co", "Cs"]), max_size=12),
    st.sampled_from(["", " ", "\x00", "\ufeff", "\u2028", "\u202e evil", "e\u0301", "\U0001f355",
                     "\ud800", "NaN", "Infinity", "-0", "1e999", "valid", "Valid ", "x" * 300]),
)
TEXT = st.one_of(st.text(max_size=20), ODD_TEXT)
# Ints a float can hold, and a few that strain other things (64-bit edges, ~10**300).
INTS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**308, -(10**308)]),
)
# Ints json.loads returns for a long literal but float() cannot hold (OverflowError).
HUGE_INTS = st.one_of(st.integers(min_value=10**309, max_value=10**400),
                      st.integers(min_value=-(10**400), max_value=-(10**309)))
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


def json_values(ints=INTS):
    scalars = st.one_of(st.none(), st.booleans(), ints, FLOATS, TEXT)
    keys = st.one_of(st.sampled_from(KNOWN_KEYS), TEXT)
    return st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=5),
                                   st.dictionaries(keys, children, max_size=5)),
        max_leaves=25,
    )


JSON = json_values()
JSON_HUGE = json_values(st.one_of(INTS, HUGE_INTS))
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT)
ANY_SMALL = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(TEXT, SCALARS, max_size=3))

# --- strategies: nearly valid shapes -------------------------------------------------------



def mostly(good, *bad, percent=70):
    """``good`` about ``percent`` % of the time, else one of ``bad``: nearly valid shapes reach
    the parsers' success paths as well as their errors."""
    other = st.one_of(*bad)
    return st.integers(0, 99).flatmap(lambda n: good if n < percent else other)


ID_LIKE = mostly(st.integers(min_value=-5, max_value=10**6),
                 INTS, st.booleans(), FLOATS, TEXT, st.none(), st.just("1"))


def price_like(ints=INTS):
    good = st.one_of(st.integers(min_value=0, max_value=100), st.floats(0, 100))
    return mostly(good, ints, FLOATS, st.booleans(), st.none(), st.just("0.001"), ANY_SMALL)


def menus(ints=INTS):
    item = st.fixed_dictionaries(
        {"id": ID_LIKE, "price": price_like(ints)},
        optional={"title": st.one_of(TEXT, ANY_SMALL), "description": TEXT, "image": TEXT},
    )
    return st.lists(mostly(item, ANY_SMALL, percent=80), max_size=8)


_STORE_DICT = st.fixed_dictionaries({"id": ID_LIKE}, optional={"name": TEXT})
STORE = mostly(_STORE_DICT, ANY_SMALL)
_STORES = mostly(st.lists(STORE, max_size=4), ANY_SMALL, percent=80)
FRANCHISE = mostly(
    st.fixed_dictionaries({"id": ID_LIKE, "stores": _STORES}, optional={"name": TEXT}),
    st.fixed_dictionaries({"id": ID_LIKE}, optional={"name": TEXT}),
    ANY_SMALL,
)
FRANCHISE_LISTS = st.lists(FRANCHISE, max_size=5)
FRANCHISES = st.one_of(
    FRANCHISE_LISTS,
    st.fixed_dictionaries({"franchises": st.one_of(FRANCHISE_LISTS, ANY_SMALL)},
                          optional={"more": st.booleans()}),
)
LINK_VALUES = st.one_of(TEXT, ANY_SMALL, st.just("https://pizza-factory.cs329.click/api/support/k/report/c"),
                        st.just("   "))
CHAOS_LINKS = st.fixed_dictionaries({}, optional={key: LINK_VALUES for key in parse.CHAOS_LINK_KEYS})
MESSAGES = st.fixed_dictionaries({}, optional={"message": st.one_of(TEXT, ANY_SMALL, st.text(max_size=300)),
                                               "msg": st.one_of(TEXT, ANY_SMALL)})
_ORDER = st.fixed_dictionaries({"id": ID_LIKE}, optional={"items": ANY_SMALL})
ORDERS = st.fixed_dictionaries(
    {"order": mostly(_ORDER, ANY_SMALL, percent=80),
     "jwt": mostly(st.text(min_size=1, max_size=20), st.just(""), TEXT, ANY_SMALL, percent=80)},
    optional={"message": st.one_of(TEXT, ANY_SMALL), **{key: LINK_VALUES for key in parse.CHAOS_LINK_KEYS}},
)
SHAPES = {
    "health_version": st.fixed_dictionaries({}, optional={"version": st.one_of(SCALARS, ANY_SMALL),
                                                           "message": TEXT}),
    "login_token": st.one_of(
        st.fixed_dictionaries({"token": st.text(min_size=1, max_size=20),
                               "user": st.dictionaries(TEXT, SCALARS, max_size=3)}),
        st.fixed_dictionaries({}, optional={"token": st.one_of(TEXT, ANY_SMALL),
                                            "user": st.one_of(ANY_SMALL, st.just({}))})),
    "cheapest_menu_item": menus(),
    "first_store": FRANCHISES,
    "chaos_link": CHAOS_LINKS,
    "message": MESSAGES,
    "order_answer": ORDERS,
    "verify_valid": st.fixed_dictionaries({}, optional={"message": st.one_of(
        st.sampled_from(["valid", "invalid", "Valid", " valid"]), ANY_SMALL)}),
}

# --- the documented result of each parser --------------------------------------------------


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_price(value) -> bool:
    """The documented contract: a JSON number a float can hold (no NaN, infinity or 400-digit
    int, which the parser drops like any other bad item)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def check_health_version(data, out):
    assert isinstance(out, str) and 0 < len(out) <= 64 and out.isprintable() and out == out.strip()
    version = data.get("version")
    assert out == "unknown" or out == str(version).strip()


def check_login_token(data, out):
    assert isinstance(out, str) and out and out == data["token"]
    assert isinstance(data["user"], dict)


def check_cheapest_menu_item(data, out):
    assert isinstance(out, parse.MenuItem)
    assert _is_id(out.id) and isinstance(out.price, float) and isinstance(out.title, str)
    assert len(out.title) <= 100
    valid = [i for i in data if isinstance(i, dict) and _is_id(i.get("id")) and _is_price(i.get("price"))]
    matches = [i["price"] for i in valid if i["id"] == out.id and float(i["price"]) == out.price]
    assert matches, "the result is none of the valid items"
    assert all(min(matches) <= i["price"] for i in valid), "not the cheapest valid item"


def check_first_store(data, out):
    assert isinstance(out, parse.Store) and _is_id(out.franchise_id) and _is_id(out.store_id)
    franchises = data.get("franchises") if isinstance(data, dict) else data
    expected = next(
        (f["id"], s["id"])
        for f in franchises if isinstance(f, dict) and _is_id(f.get("id")) and isinstance(f.get("stores"), list)
        for s in f["stores"] if isinstance(s, dict) and _is_id(s.get("id"))
    )
    assert (out.franchise_id, out.store_id) == expected


def check_chaos_link(data, out):
    if out is None:
        assert not isinstance(data, dict) or not any(
            isinstance(data.get(k), str) and data[k].strip() for k in parse.CHAOS_LINK_KEYS)
        return
    assert isinstance(out, RecoveryLink) and out.key in parse.CHAOS_LINK_KEYS
    first = next(k for k in parse.CHAOS_LINK_KEYS if isinstance(data.get(k), str) and data[k].strip())
    assert (out.key, out.reveal()) == (first, data[first].strip())


def check_message(data, out):
    assert isinstance(out, str) and len(out) <= 120 and out.isprintable()


def check_order_answer(data, out):
    assert isinstance(out, parse.OrderAnswer)
    assert _is_id(out.order_id) and out.order_id == data["order"]["id"]
    assert isinstance(out.jwt, str) and out.jwt == data["jwt"]
    check_message(data, out.message)
    assert out.link is None or isinstance(out.link, RecoveryLink)


def check_verify_valid(data, out):
    assert out is (data.get("message") == "valid")


PARSERS = {
    "health_version": check_health_version,
    "login_token": check_login_token,
    "cheapest_menu_item": check_cheapest_menu_item,
    "first_store": check_first_store,
    "chaos_link": check_chaos_link,
    "message": check_message,
    "order_answer": check_order_answer,
    "verify_valid": check_verify_valid,
}


def _parse_or_shape_error(name, data):
    """Call the parser; a ShapeError is fine, anything else fails; a value is checked."""
    try:
        out = getattr(parse, name)(data)
    except parse.ShapeError as exc:
        assert str(exc) and str(exc).isprintable()
        return
    PARSERS[name](data, out)



@pytest.mark.parametrize("name", list(PARSERS))
@SETTINGS
@given(data=st.data())
def test_parser_returns_its_type_or_raises_shape_error(name, data):
    value = data.draw(st.one_of(JSON, SHAPES[name]), label="answer")
    _parse_or_shape_error(name, value)


@pytest.mark.parametrize("name", list(PARSERS))
@SETTINGS
@given(value=st.one_of(JSON_HUGE, menus(st.one_of(INTS, HUGE_INTS)), FRANCHISES, ORDERS))
@example(value=[{"id": 1, "price": 10**400}])
@example(value={"version": 10**400, "token": "t", "user": {}, "order": {"id": 10**400}, "jwt": "j"})
def test_parser_with_ints_beyond_float_range(name, value):
    _parse_or_shape_error(name, value)


@SETTINGS
@given(menu=menus())
def test_cheapest_menu_item_is_the_minimum_valid_price(menu):
    valid = [i for i in menu if isinstance(i, dict) and _is_id(i.get("id")) and _is_price(i.get("price"))]
    if not valid:
        with pytest.raises(parse.ShapeError):
            parse.cheapest_menu_item(menu)
        return
    out = parse.cheapest_menu_item(menu)
    check_cheapest_menu_item(menu, out)
    assert out.price == float(min(i["price"] for i in valid))


@SETTINGS
@given(answer=FRANCHISES)
def test_first_store_finds_the_first_franchise_with_a_store(answer):
    try:
        out = parse.first_store(answer)
    except parse.ShapeError:
        franchises = answer.get("franchises") if isinstance(answer, dict) else answer
        assert not isinstance(franchises, list) or not any(
            isinstance(f, dict) and _is_id(f.get("id")) and isinstance(f.get("stores"), list)
            and any(isinstance(s, dict) and _is_id(s.get("id")) for s in f["stores"])
            for f in franchises)
        return
    check_first_store(answer, out)


# --- the client's decode path: raw bytes in, StepFailure out -------------------------------


class _FakeResponse:
    def __init__(self, status: int, body: bytes, content_length: bool) -> None:
        self.status_code = status
        self._body = body
        self.headers = {"Content-Length": str(len(body))} if content_length else {}

    def iter_content(self, size: int):
        for start in range(0, len(self._body), size):
            yield self._body[start:start + size]

    def close(self) -> None:
        pass


class _FakeSession:
    """Stands in for requests.Session: every request gets the same status and raw body, so
    the client's own reading, decoding and parsing run unchanged, without HTTP."""

    trust_env = True
    cookies = None

    def __init__(self, status: int, body: bytes, content_length: bool = True) -> None:
        self.status, self.body, self.content_length = status, body, content_length
        self.calls: list[tuple[str, str]] = []
        self.headers: dict[str, str] = {}

    def mount(self, prefix, adapter) -> None:
        pass

    def request(self, method, url, **kwargs):
        self.calls.append((method, url))
        return _FakeResponse(self.status, self.body, self.content_length)

    def send(self, prepared, **kwargs):  # the client prepares its requests itself
        return self.request(prepared.method, prepared.url, **kwargs)

    def close(self) -> None:
        pass


_ITEM = parse.MenuItem(1, "Veggie", 0.0038)
_STORE = parse.Store(1, 1)
STEPS = {
    "health": (lambda c: c.health(), str),
    "login": (lambda c: c.login(), str),
    "menu": (lambda c: c.cheapest_menu_item("tok"), parse.MenuItem),
    "franchises": (lambda c: c.first_store("tok"), parse.Store),
    "order": (lambda c: c.order("tok", _STORE, _ITEM), parse.OrderAnswer),
    "verify": (lambda c: c.verify("eyJ.a.b"), type(None)),
    "logout": (lambda c: c.logout("tok"), type(None)),
}
STATUSES = st.one_of(st.just(200), st.sampled_from([200, 201, 204, 301, 302, 401, 403, 404, 500, 503]),
                     st.integers(min_value=0, max_value=999))


def _encodings(value):
    return st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1", "utf-8-sig"]).map(
        lambda enc: value.encode(enc, errors="replace"))


STEP_SHAPES = {"health": "health_version", "login": "login_token", "menu": "cheapest_menu_item",
               "franchises": "first_store", "order": "order_answer", "verify": "verify_valid",
               "logout": "message"}


def bodies(step):
    """Raw bodies for one step: mostly its own answer's shape, encoded in every way."""
    own = SHAPES[STEP_SHAPES[step]]
    shapes = mostly(own, JSON, *SHAPES.values())
    as_json = shapes.map(lambda v: json.dumps(v).encode())
    return st.one_of(
        st.binary(max_size=200),
        as_json,
        shapes.map(json.dumps).flatmap(_encodings),
        st.text(max_size=50).flatmap(_encodings),
        as_json.flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),  # truncated
        st.sampled_from([b"", b"null", b"[" * 5000, b'{"a":' * 5000, b"1" * 5000, b"\xff\xfe{}",
                         b'{"version": "\\ud800"}', b"NaN", b'{"token": "t", "user": {}}']),
    )


def _run_step(step: str, status: int, body: bytes, content_length: bool) -> None:
    action, kind = STEPS[step]
    session = _FakeSession(status, body, content_length)
    with PizzaClient(ProbeConfig(), session=session) as client:
        try:
            out = action(client)
        except StepFailure as failure:
            assert failure.reason in REASONS
            assert failure.status == status
            assert failure.detail.isprintable() and len(failure.detail) <= 200
            return
    assert isinstance(out, kind)
    assert status == 200, "a non-200 answer was taken as success"
    assert len(session.calls) == 1


@pytest.mark.parametrize("step", list(STEPS))
@SETTINGS
@given(data=st.data(), status=STATUSES, content_length=st.booleans())
def test_client_step_on_any_raw_body_raises_only_step_failure(step, data, status, content_length):
    _run_step(step, status, data.draw(bodies(step), label="body"), content_length)


@SETTINGS
@given(price=HUGE_INTS)
@example(price=10**400)
def test_client_menu_step_with_a_price_beyond_float_range(price):
    body = b'[{"id": 1, "title": "Veggie", "price": ' + str(price).encode() + b"}]"
    _run_step("menu", 200, body, True)


# --- redaction: no output holds the link's key or fix code ----------------------------------

URL_SAFE = string.ascii_letters + string.digits + "-._~"
SECRETS = st.one_of(
    st.text(alphabet=URL_SAFE, min_size=8, max_size=40),
    st.binary(min_size=4, max_size=32).map(bytes.hex),
)
HOSTS = st.sampled_from([*DEFAULT_ALLOWED_HOSTS, "127.0.0.1", "localhost", "[::1]", "factory.example"])
PORTS = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
SCHEMES = st.sampled_from(["https", "http", "HTTPS", "Http"])
PARAM_NAMES = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,7}", fullmatch=True).filter(
    lambda n: n not in ("apiKey", "fixCode"))


@st.composite
def link_templates(draw):
    """A function (key, code) -> link, in either form, with the odd parts links may have."""
    scheme, host, port = draw(SCHEMES), draw(HOSTS), draw(PORTS)
    userinfo = draw(st.sampled_from(["", "user@", "user:pw@", "{key}:{code}@"]))
    extras = draw(st.lists(st.tuples(PARAM_NAMES, st.text(URL_SAFE, max_size=8)), max_size=3))
    fragment = draw(st.sampled_from(["", "#", "#top", "#{code}", "#k={key}"]))
    form = draw(st.sampled_from(["path", "query"]))
    extra_query = "&".join(f"{n}={v}" for n, v in extras)
    if form == "path":
        tail = "/api/support/{key}/report/{code}" + (f"?{extra_query}" if extra_query else "")
    else:
        params = ["apiKey={key}", "fixCode={code}", *(f"{n}={v}" for n, v in extras)]
        order = draw(st.permutations(params))
        tail = "/api/report?" + "&".join(order)
    template = f"{scheme}://{userinfo}{host}{port}{tail}{fragment}"
    return lambda key, code: template.replace("{key}", key).replace("{code}", code)


def _assume_secrets_not_public(key, code, public: str) -> None:
    assume(key != code)
    assume(key not in public and code not in public)
    assume(key not in "https://pizza-factory.cs329.click/api/support/report?apiKey=&fixCode=")
    assume(code not in "https://pizza-factory.cs329.click/api/support/report?apiKey=&fixCode=")


def _no_secret(text: str, key: str, code: str) -> None:
    assert key not in text, f"key {key!r} in {text!r}"
    assert code not in text, f"fix code {code!r} in {text!r}"


@SETTINGS
@given(template=link_templates(), key=SECRETS, code=SECRETS)
@example(template=lambda k, c: f"https://pizza-factory.cs329.click/api/support/{k}/report/{c}",
         key="0123456789abcdef", code="fedcba9876543210")
@example(template=lambda k, c: f"https://cs329.cs.byu.edu/api/report?apiKey={k}&fixCode={c}",
         key="0123456789abcdef", code="fedcba9876543210")
def test_redacted_link_holds_neither_key_nor_code(template, key, code):
    _assume_secrets_not_public(key, code, template("", ""))
    url = template(key, code)
    link = RecoveryLink(url, "followLinkToEndChaos")
    renderings = (
        lambda lk: redact_url(lk.reveal()), str, repr, lambda lk: lk.redacted, lambda lk: f"{lk}",
        lambda lk: f"{lk!r}", lambda lk: repr(parse.OrderAnswer(1, "jwt", "", lk)),
        lambda lk: repr(ProbeReport(1, False, 0.0, "order", "factory_error", "", lk)),
    )
    for render in renderings:
        # a "secret" that the rendering's public text holds anyway (say 'ProbeRep', from the
        # class name) proves nothing: compare with the rendering of a link without secrets
        _assume_secrets_not_public(key, code, render(RecoveryLink(template("", ""), "followLinkToEndChaos")))
        _no_secret(render(link), key, code)
    assert link.reveal() == url


@SETTINGS
@given(template=link_templates(), key=SECRETS, code=SECRETS, before=st.text(max_size=30),
       after=st.text(max_size=30),
       glue=st.tuples(*[st.sampled_from([" ", "\n", "\t", "(", "\"", "'", "<", ">", ": ", "", "x", "\x00"])] * 2),
       limit=st.sampled_from([120, 40, 10_000]))
def test_link_in_free_text_is_redacted(template, key, code, before, after, glue, limit):
    _assume_secrets_not_public(key, code, template("", ""))
    for secret in (key, code):
        assume(secret not in before + after and secret.lower() not in (before + after).lower())
    text = before + glue[0] + template(key, code) + glue[1] + after
    out = redact_text(text, limit=limit)
    _no_secret(out, key, code)
    assert len(out) <= limit and out.isprintable()
    _no_secret(parse.message({"message": text}), key, code)


@SETTINGS
@given(template=link_templates(), key=SECRETS, code=SECRETS, name=st.sampled_from(parse.CHAOS_LINK_KEYS))
def test_failed_order_carrying_the_link_never_shows_it(template, key, code, name):
    """A 500 from the factory with the link in the body and in its message: the StepFailure's
    text, detail and link show neither secret."""
    _assume_secrets_not_public(key, code, template("", ""))
    url = template(key, code)
    body = json.dumps({"message": f"Failed to fulfill order at factory, see {url}", name: url}).encode()
    session = _FakeSession(500, body)
    with PizzaClient(ProbeConfig(), session=session) as client:
        with pytest.raises(StepFailure) as caught:
            client.order("tok", _STORE, _ITEM)
    failure = caught.value
    assert failure.link is not None and failure.link.reveal() == url
    for shown in (str(failure), repr(failure), failure.detail, str(failure.link), repr(failure.link)):
        _no_secret(shown, key, code)


@SETTINGS
@given(text=st.one_of(st.text(), ODD_TEXT, st.from_regex(r"[a-zA-Z+.-]{1,6}://\S{0,40}", fullmatch=True),
                      st.builds(lambda a, b: f"http://{a}/{b}", st.text(max_size=15), st.text(max_size=15))))
@example(text="http://[::1")
@example(text="http://host:99999/x")
@example(text="http://h:-1/x")
@example(text="https://\u2100/x")
def test_redact_url_of_any_text_never_raises(text):
    out = redact_url(text)
    assert isinstance(out, str) and out
    assert out == MASK or "://" in out
    # Only checked parts survive: scheme, a plain host, the port, public segments, query names.
    assert out.isascii() and out.isprintable() and not any(ch.isspace() for ch in out), out


# --- the recovery link policy and the resolver's answer -------------------------------------

POLICY = LinkPolicy.default("https://pizza-factory.cs329.click", ["127.0.0.1:8080", "factory.example"])
OTHER_SCHEMES = st.from_regex(r"[a-zA-Z][a-zA-Z0-9+.-]{0,8}", fullmatch=True).filter(
    lambda s: s.lower() not in ("http", "https"))
ALLOWED_URLS = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "https"]),
    st.sampled_from([*DEFAULT_ALLOWED_HOSTS, "127.0.0.1", "factory.example"]),
    st.sampled_from(["", ":443", ":80", ":8080"]),
    st.sampled_from(["/api/report", "/api/report?apiKey=k&fixCode=c", "/api/support/k/report/c"]),
)


def _mangled(url: str):
    """An admitted URL with junk put somewhere in it: the parsers must still agree on the host."""
    junk = st.sampled_from(["\t", "\n", "\r", " ", "\\", "@", "#", "?", "%2e", "%00", "\x00", "/",
                            ":", "[", "]", ".", "..", "\u3002", "\uff0f", "evil.example", "@evil.example"])
    return st.tuples(st.integers(0, len(url)), junk).map(lambda t: url[:t[0]] + t[1] + url[t[0]:])


@SETTINGS
@given(url=st.one_of(st.text(), ODD_TEXT, ALLOWED_URLS, ALLOWED_URLS.flatmap(_mangled),
                     st.text(max_size=3000, alphabet="ab/:.").map(lambda t: "https://cs329.cs.byu.edu/" + t)))
def test_link_policy_refusal_never_raises(url):
    refusal = POLICY.refusal(url)
    assert refusal is None or (isinstance(refusal, str) and refusal)


@SETTINGS
@given(scheme=OTHER_SCHEMES, rest=st.one_of(st.text(max_size=40), ALLOWED_URLS.map(lambda u: u.split("://", 1)[1])))
def test_link_policy_refuses_every_other_scheme(scheme, rest):
    assert POLICY.refusal(f"{scheme}://{rest}") is not None


@SETTINGS
@given(url=st.one_of(ALLOWED_URLS, ALLOWED_URLS.flatmap(_mangled)))
def test_an_admitted_link_goes_to_an_allowed_host(url):
    """What the policy admits, requests sends to an allow-listed host and port (or refuses to
    send at all): urllib.parse and urllib3 must not disagree on the host."""
    if POLICY.refusal(url) is not None:
        return
    try:
        prepared = requests.Request("GET", url).prepare()
        requests.Session().get_adapter(prepared.url)  # InvalidSchema: no adapter, never sent
        parts = parse_url(prepared.url)
    except (requests.RequestException, ValueError):
        return  # requests will not send it
    port = parts.port or {"http": 80, "https": 443}[parts.scheme]
    assert (parts.host, port) in POLICY.entries or (parts.host, None) in POLICY.entries, prepared.url


@SETTINGS
@given(entries=st.lists(st.one_of(st.text(max_size=20), ALLOWED_URLS,
                                  st.from_regex(r"[a-z.]{1,10}:\d{1,6}", fullmatch=True)),
                        max_size=4))
@example(entries=["http://factory.example:99999"])
def test_link_policy_builds_or_refuses_an_entry_with_a_config_error(entries):
    try:
        policy = LinkPolicy(entries)
    except ConfigError as exc:  # one clear line: --allow-host gives exit 2
        assert "\n" not in str(exc) and str(exc).startswith("allow-host: ")
        return
    refusal = policy.refusal("https://cs329.cs.byu.edu/api/report")
    listed = {("cs329.cs.byu.edu", None), ("cs329.cs.byu.edu", 443)} & policy.entries
    assert (refusal is None) == bool(listed), refusal


CLASSIFY_BODIES = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda key, text: json.dumps({key: text}).encode(), st.sampled_from(["message", "msg", "error"]),
              st.one_of(TEXT, st.sampled_from(["Problem resolved", "Chaos resolved", "No chaos to resolve",
                                               "Unresolved", "Failed to resolve chaos", "CHAOS RESOLVED\x00"]))),
    JSON.map(lambda v: json.dumps(v).encode()),
)


@SETTINGS
@given(status=st.one_of(st.integers(), st.sampled_from([200, 400, 404, 500])), body=CLASSIFY_BODIES)
def test_classify_answer_never_raises(status, body):
    outcome = classify_answer(status, body)
    assert isinstance(outcome, LinkOutcome) and outcome.result in RESULTS
    assert outcome.result in ("resolved", "no_chaos", "unresolved", "error")
    assert outcome.status == status and outcome.detail.isprintable()


def test_classify_answer_on_a_deeply_nested_body():
    outcome = classify_answer(200, b"[" * 60_000)
    assert outcome.result == "error"


# --- Alertmanager's webhook ---------------------------------------------------------------

ALERTS = st.fixed_dictionaries(
    {"status": st.one_of(st.sampled_from(["firing", "resolved"]), SCALARS),
     "labels": st.one_of(st.dictionaries(TEXT, TEXT, max_size=3),
                         st.dictionaries(TEXT, SCALARS, max_size=3), ANY_SMALL),
     "startsAt": st.one_of(st.just("2024-01-01T00:00:00Z"), SCALARS)},
    optional={"fingerprint": st.one_of(TEXT, SCALARS), "endsAt": TEXT},
)
WEBHOOKS = st.fixed_dictionaries(
    {"version": st.one_of(st.sampled_from(["4", 4, 4.0, "04", True]), SCALARS)},
    optional={"alerts": st.one_of(st.lists(st.one_of(ALERTS, ALERTS, ANY_SMALL), max_size=4), ANY_SMALL),
              "status": TEXT, "groupKey": TEXT},
)


@SETTINGS
@given(body=st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode()),
                      WEBHOOKS.map(lambda v: json.dumps(v).encode()),
                      WEBHOOKS.map(json.dumps).flatmap(_encodings)))
@example(body=b"[" * 100_000)
@example(body=b'{"version": ' + b"9" * 5000 + b"}")
@example(body=b'{"version": "4", "alerts": [{"status": "firing", "labels": {}, "startsAt": "x"}]}')
def test_parse_webhook_raises_only_webhook_error(body):
    try:
        events = parse_webhook(body)
    except WebhookError as exc:
        assert str(exc).isprintable()
        return
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, AlertEvent) and event.status in ("firing", "resolved")
        assert isinstance(event.fingerprint, str) and event.fingerprint
        assert isinstance(event.starts_at, str) and event.starts_at and isinstance(event.name, str)


# --- the exporter's hand-off answer, as the sidecar's feed reads it --------------------------

REPORTS = st.fixed_dictionaries(
    {"seq": st.one_of(st.integers(0, 10**6), ID_LIKE)},
    optional={"success": SCALARS, "started_at": st.one_of(st.floats(0, 2e9), SCALARS, ANY_SMALL),
              "failed_step": st.one_of(st.sampled_from(["order", "login"]), SCALARS),
              "reason": st.one_of(st.sampled_from(list(REASONS)), SCALARS), "detail": st.one_of(TEXT, ANY_SMALL),
              "chaos_link": LINK_VALUES, "chaos_link_key": st.one_of(TEXT, ANY_SMALL),
              "first_failure_at": st.one_of(st.floats(0, 2e9), SCALARS, ANY_SMALL)},
)

@SETTINGS
@given(data=st.one_of(JSON_HUGE, REPORTS))
@example(data={"seq": 1, "started_at": [0]})
def test_probe_report_from_json_raises_only_value_error(data):
    try:
        report = ProbeReport.from_json(data)
    except ValueError:
        return
    assert isinstance(report, ProbeReport)


def test_probe_report_from_json_with_a_started_at_beyond_float_range():
    with pytest.raises(ValueError):
        ProbeReport.from_json({"seq": 1, "started_at": 10**400})


def _number_or_none(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


@SETTINGS
@given(data=REPORTS)
@example(data={"seq": 1, "first_failure_at": "soon"})
def test_probe_report_from_json_fields_have_their_documented_types(data):
    try:
        report = ProbeReport.from_json(data)
    except ValueError:
        return
    assert isinstance(report.seq, int) and isinstance(report.success, bool)
    assert isinstance(report.started_at, float) and isinstance(report.detail, str)
    assert _number_or_none(report.first_failure_at), report.first_failure_at
    assert report.failed_step is None or isinstance(report.failed_step, str)
    assert report.reason is None or isinstance(report.reason, str)
    assert report.link is None or isinstance(report.link, RecoveryLink)


@SETTINGS
@given(seq=st.integers(0, 10**9), success=st.booleans(), started_at=st.floats(0, 2e9),
       step=st.sampled_from(["health", "order", None]), reason=st.sampled_from([*REASONS, None]),
       detail=st.text(max_size=40), template=link_templates(), key=SECRETS, code=SECRETS,
       link_name=st.sampled_from(parse.CHAOS_LINK_KEYS), has_link=st.booleans(),
       first=st.one_of(st.none(), st.floats(0, 2e9)))
def test_probe_report_round_trips_and_prints_no_secret(seq, success, started_at, step, reason, detail,
                                                       template, key, code, link_name, has_link, first):
    _assume_secrets_not_public(key, code, template("", ""))
    assume(key not in detail and code not in detail)
    link = RecoveryLink(template(key, code), link_name) if has_link else None
    report = ProbeReport(seq, success, started_at, step, reason, detail, link, first)
    wire = json.loads(json.dumps(report.to_json()))
    assert ProbeReport.from_json(wire) == report
    without_link = repr(dataclasses.replace(report, link=None))
    assume(key not in without_link and code not in without_link)  # e.g. key '00000000' in seq
    _no_secret(repr(report), key, code)
    _no_secret(str(report), key, code)
