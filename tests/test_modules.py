"""The modules file (``--config.file``): every key, the targets /probe may reach, one-line errors
that name the key and echo no secret, and ``ModulesSource``'s reload. Pure: no network."""

from __future__ import annotations

import logging
import textwrap
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import modules as modules_module
from exporter.config import ConfigError, ProbeConfig
from exporter.logs import LOGGER_NAME
from exporter.modules import (
    DEFAULT_MIN_INTERVAL,
    MAX_TARGET_LENGTH,
    Module,
    ModulesSource,
    load_modules,
    normalize_target,
    parse_modules,
)

SECRET = "hunter2-Zq81"
SOURCE = "modules.yml"


def parse(text: str, **kwargs):
    kwargs.setdefault("environ", {})
    return parse_modules(textwrap.dedent(text), source=SOURCE, **kwargs)


# --- a full, valid file ------------------------------------------------------------------------

FULL = r"""
modules:
  full:
    factory_url: https://Factory.example.com/
    email: "  probe@jwt.com  "
    password_env: PIZZA_TEST_MODULE_PW
    timeout: 2s
    order_timeout: 1m30s
    slow_threshold: 500ms
    min_interval: 0
    read_only: true
  fromfile:
    password_file: secrets/pw.txt
    timeout: 15
    min_interval: 1m
  bare: {}
  empty:
targets:
  - HTTP://Pizza.Example.COM/
  - https://shop.example.com/Base/
  - "  http://127.0.0.1:3000  "
allowed_target_patterns:
  - 'https://[a-z0-9-]+\.pizza\.example\.com'
"""


@pytest.fixture
def full_file(tmp_path, monkeypatch):
    """FULL as a file in its own directory, its password file beside it, the cwd elsewhere."""
    directory = tmp_path / "conf"
    (directory / "secrets").mkdir(parents=True)
    (directory / "secrets" / "pw.txt").write_text("pw-from-file\nsecond line is ignored\n")
    path = directory / "modules.yml"
    path.write_text(FULL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # password_file is relative to the file, not to the cwd
    return path


def test_a_full_file_sets_every_module_key(full_file):
    loaded = load_modules(str(full_file), environ={"PIZZA_TEST_MODULE_PW": "pw-from-env"})
    assert set(loaded.modules) == {"full", "fromfile", "bare", "empty"}
    assert loaded.source == f"config.file {full_file}"

    full = loaded.modules["full"]
    assert full.name == "full"
    assert full.probe.factory_url == "https://Factory.example.com"  # the trailing slash dropped
    assert full.probe.email == "probe@jwt.com"
    assert full.probe.password == "pw-from-env"
    assert (full.probe.timeout, full.probe.order_timeout, full.probe.slow_threshold) == (2, 90, 0.5)
    assert full.min_interval == 0  # zero is allowed here: no caching between scrapes
    assert full.probe.read_only is True
    assert full.config_for("http://svc").service_url == "http://svc"
    assert full.config_for("http://svc").password == "pw-from-env"

    fromfile = loaded.modules["fromfile"]
    assert fromfile.probe.password == "pw-from-file"  # the first line only
    assert fromfile.probe.timeout == 15 and fromfile.min_interval == 60
    assert fromfile.probe.read_only is False

    defaults = ProbeConfig()
    for name in ("bare", "empty"):  # an empty mapping or null: every setting at its default
        module = loaded.modules[name]
        assert module.probe == defaults and module.min_interval == DEFAULT_MIN_INTERVAL


def test_targets_are_normalized_and_patterns_compiled(full_file):
    loaded = load_modules(str(full_file), environ={"PIZZA_TEST_MODULE_PW": "x"})
    assert loaded.targets == {"http://pizza.example.com", "https://shop.example.com/Base",
                              "http://127.0.0.1:3000"}  # the path keeps its case
    assert [p.pattern for p in loaded.patterns] == [r"https://[a-z0-9-]+\.pizza\.example\.com"]
    assert loaded.allows(normalize_target("https://Shop.Example.com/Base/"))
    assert not loaded.allows(normalize_target("https://shop.example.com/base"))


def test_a_target_of_exactly_the_longest_length_is_accepted():
    url = "http://h/" + "a" * (MAX_TARGET_LENGTH - len("http://h/"))
    assert len(url) == MAX_TARGET_LENGTH
    assert parse(f"targets: ['{url}']").targets == {url}
    with pytest.raises(ConfigError, match=r"targets\[0\]: longer than 512"):
        parse(f"targets: ['{url}a']")


@pytest.mark.parametrize("raw,normalized", [
    ("HTTP://Pizza.Example.COM/", "http://pizza.example.com"),
    ("https://Host:8443/A/b/", "https://host:8443/A/b"),
    ("  http://127.0.0.1:3000//  ", "http://127.0.0.1:3000"),
])
def test_normalize_target_lowercases_scheme_and_host_and_drops_the_trailing_slash(raw, normalized):
    assert normalize_target(raw) == normalized
    assert normalize_target(normalized) == normalized


@pytest.mark.parametrize("raw,normalized", [("http://h/?", "http://h"), ("http://h/a/#", "http://h/a")],
                         ids=["empty-query", "empty-fragment"])
def test_normalize_target_drops_a_slash_hidden_by_an_empty_query_or_fragment(raw, normalized):
    # Regression (fixed): normalize_target (exporter/modules.py) relied on parse_http_url's
    # rstrip("/"), which runs before urlunsplit drops the empty "?" or "#"; so "http://h/?"
    # normalizes to "http://h/" (and normalizing that again gives "http://h": not idempotent).
    # "serve --target a=http://h/?" then requests "http://h//api/auth" (a double slash that
    # the simulator's http.server collapses, but that a strict router or proxy need not route).
    assert normalize_target(raw) == normalized


HEAD = "https://pizza-service.example.com:8443"


@settings(max_examples=60, deadline=None, database=None)
@given(flips=st.lists(st.booleans(), min_size=len(HEAD), max_size=len(HEAD)), slash=st.booleans())
def test_a_listed_target_is_allowed_whatever_the_case_of_its_scheme_and_host(flips, slash):
    head = HEAD
    listed = parse(f"targets: ['{head}/base']")
    variant = "".join(c.upper() if f else c for c, f in zip(head, flips, strict=False)) + "/base"
    assert listed.allows(normalize_target(variant + ("/" if slash else "")))
    assert not listed.allows(normalize_target(variant + "/Base"))  # the path is case-sensitive


# --- allowed_target_patterns: anchored, and the '.' footgun ------------------------------------

def test_a_pattern_must_match_the_whole_target():
    loaded = parse(r"allowed_target_patterns: ['https://[a-z0-9-]+\.pizza\.example\.com']")
    assert loaded.allows("https://a1.pizza.example.com")
    assert loaded.allows(normalize_target("HTTPS://A1.Pizza.Example.com/"))
    for refused in ("https://a1.pizza.example.com/admin",       # a longer URL: a path
                    "https://a1.pizza.example.com.evil.test",   # another host
                    "https://a1.pizza.example.com:8443",        # another port
                    "http://a1.pizza.example.com",              # another scheme
                    "xhttps://a1.pizza.example.com"):
        assert not loaded.allows(refused), refused


def test_static_targets_passed_as_also_are_allowed():
    loaded = parse("targets: ['http://listed']")
    assert loaded.allows("http://listed")
    assert not loaded.allows("http://scheduled")
    assert loaded.allows("http://scheduled", also=["http://scheduled"])


def test_dot_and_dot_star_match_a_slash_so_patterns_need_a_host_class():
    """The footgun: ``.`` matches ``/``, so ``.*`` (or an unescaped dot) lets a pattern meant for
    hosts admit a URL on ANOTHER host whose path spells the suffix. ``[^/]*`` does not."""
    other_host = normalize_target("https://evil.test/x.pizza.example.com")
    assert other_host.startswith("https://evil.test/")
    loose = parse(r"allowed_target_patterns: ['https://.*\.pizza\.example\.com']")
    assert loose.allows(other_host)  # documented footgun: admitted although the host is evil.test
    unescaped = parse("allowed_target_patterns: ['https://pizza.example.com']")
    assert unescaped.allows(normalize_target("https://pizza/example.com"))  # host "pizza"
    strict = parse(r"allowed_target_patterns: ['https://[^/]*\.pizza\.example\.com']")
    assert strict.allows("https://a.pizza.example.com")
    assert not strict.allows(other_host)
    escaped = parse(r"allowed_target_patterns: ['https://pizza\.example\.com']")
    assert not escaped.allows(normalize_target("https://pizza/example.com"))


# --- the flags' default module -----------------------------------------------------------------

def test_without_a_file_the_flags_make_the_one_module_default():
    flags = ProbeConfig(email="flags@jwt.com", timeout=3)
    source = ModulesSource(None, flags)
    assert set(source.current.modules) == {"default"}
    assert source.current.modules["default"].probe is flags
    assert source.current.modules["default"].min_interval == DEFAULT_MIN_INTERVAL


def test_with_a_file_its_modules_are_all_there_is(tmp_path):
    """No hidden 'default' made of the flags: a /probe client could pick it and place orders on
    targets the file meant to probe read-only."""
    path = tmp_path / "modules.yml"
    path.write_text("modules:\n  ro:\n    read_only: true\n")
    flags = ProbeConfig(email="flags@jwt.com", timeout=3)
    assert set(ModulesSource(str(path), flags).current.modules) == {"ro"}
    with pytest.raises(ConfigError, match="no module 'default'"):
        ModulesSource(str(path), flags, required=["default"])
    path.write_text("modules:\n  default:\n    email: file@jwt.com\n    min_interval: 5s\n")
    module = ModulesSource(str(path), flags).current.modules["default"]
    assert module.probe.email == "file@jwt.com" and module.min_interval == 5
    assert module.probe.timeout == ProbeConfig().timeout  # the file's, not merged with the flags


# --- errors: one line, naming the key path, echoing no secret ----------------------------------

def _module(body: str) -> str:
    return "modules:\n  x:\n" + textwrap.indent(textwrap.dedent(body), "    ")


ERRORS = [
    # (id, text, environ, fragments the line must contain)
    # invalid YAML: the secret-looking string is on the line the error points at
    ("invalid-yaml-flow", f"modules:\n  x: {{password_env: PW, email: {SECRET}]\n", {},
     ["not valid YAML at line 2, column 44"]),
    ("invalid-yaml-tab", f"modules:\n\tx: {SECRET}\n", {}, ["not valid YAML at line 2, column 1"]),
    ("invalid-yaml-colon", _module(f"email: {SECRET}: {SECRET}\n"), {},
     ["not valid YAML at line 3"]),
    ("invalid-yaml-two-scalars", _module(f"email: '{SECRET}' {SECRET}\n"), {},
     ["not valid YAML at line 3"]),
    ("invalid-yaml-unclosed", f"modules: [\n  password: {SECRET}\n", {}, ["not valid YAML at line"]),
    ("top-level-list", "- modules\n", {}, ["must be a mapping"]),
    ("top-level-scalar", "modules\n", {}, ["must be a mapping"]),
    ("unknown-top-level-key", "module:\n  x: {}\n", {}, ["module: unknown key"]),
    ("modules-not-mapping", "modules: [a, b]\n", {}, ["modules: must map names"]),
    ("module-not-mapping", "modules:\n  x: [1]\n", {}, ["modules.x: must be a mapping"]),
    ("unknown-module-key", _module("timeot: 10s\n"), {}, ["modules.x.timeot: unknown key"]),
    ("inline-password", _module(f"password: {SECRET}\n"), {},
     ["modules.x.password:", "never written in the file"]),
    ("inline-password-with-env", _module(f"password: {SECRET}\npassword_env: PW\n"),
     {"PW": "x"}, ["modules.x.password:", "never written in the file"]),
    # the variable's name is not echoed: a password put there by mistake can look like one
    ("password-env-unset", _module("password_env: PIZZA_TEST_UNSET\n"), {},
     ["modules.x.password_env", "not set or empty"]),
    ("password-env-empty", _module("password_env: PW\n"), {"PW": ""}, ["modules.x.password_env"]),
    ("password-env-not-a-name", _module("password_env: [PW]\n"), {}, ["modules.x.password_env"]),
    # A password put where the variable's name belongs is not echoed back.
    ("password-env-holds-a-password", _module(f"password_env: '{SECRET}'\n"), {},
     ["modules.x.password_env", "must name an environment variable"]),
    ("password-env-and-file", _module("password_env: PW\npassword_file: pw.txt\n"),
     {"PW": SECRET}, ["modules.x:", "not both"]),
    ("password-file-missing", _module("password_file: missing.txt\n"), {},
     ["modules.x.password_file", "cannot read"]),
    ("password-file-empty", _module("password_file: empty.txt\n"), {},
     ["modules.x.password_file", "empty"]),
    ("password-file-blank", _module("password_file: ''\n"), {}, ["modules.x.password_file"]),
    ("timeout-not-duration", _module("timeout: abc\n"), {}, ["modules.x.timeout"]),
    ("timeout-bool", _module("timeout: true\n"), {}, ["modules.x.timeout"]),
    ("timeout-infinite", _module("timeout: .inf\n"), {}, ["modules.x.timeout"]),
    ("order-timeout-negative", _module("order_timeout: -1s\n"), {}, ["modules.x.order_timeout"]),
    ("slow-threshold-bad-unit", _module("slow_threshold: 1x\n"), {}, ["modules.x.slow_threshold"]),
    ("min-interval-negative", _module("min_interval: -1\n"), {}, ["modules.x.min_interval"]),
    ("min-interval-not-duration", _module("min_interval: soon\n"), {}, ["modules.x.min_interval"]),
    ("timeout-zero", _module("timeout: 0\n"), {}, ["modules.x.timeout", "greater than zero"]),
    ("order-timeout-zero", _module("order_timeout: 0s\n"), {}, ["modules.x.order_timeout"]),
    ("slow-threshold-zero", _module("slow_threshold: 0ms\n"), {}, ["modules.x.slow_threshold"]),
    ("email-empty", _module("email: '  '\n"), {}, ["modules.x.email"]),
    ("factory-url-ftp", _module("factory_url: ftp://factory.example\n"), {},
     ["modules.x.factory_url", "http"]),
    ("factory-url-credentials", _module(f"factory_url: 'https://user:{SECRET}@factory.example'\n"),
     {}, ["modules.x.factory_url", "user or password"]),
    ("factory-url-query", _module(f"factory_url: 'https://factory.example/?token={SECRET}'\n"),
     {}, ["modules.x.factory_url"]),
    ("module-name-space", "modules:\n  'bad name': {}\n", {}, ["modules: module names"]),
    ("module-name-too-long", f"modules:\n  {'m' * 65}: {{}}\n", {}, ["modules: module names"]),
    ("module-name-number", "modules:\n  1: {}\n", {}, ["modules: module names"]),
    ("read-only-string", _module("read_only: 'true'\n"), {}, ["modules.x.read_only"]),
    ("read-only-number", _module("read_only: 1\n"), {}, ["modules.x.read_only"]),
    ("targets-not-list", "targets: http://pizza.example.com\n", {}, ["targets: must be a list"]),
    ("targets-item-not-string", "targets: [5]\n", {}, ["targets[0]: must be a URL"]),
    ("targets-bad-url", "targets: ['http://ok.example', 'ftp://x']\n", {}, ["targets[1]"]),
    ("targets-no-host", "targets: ['http://']\n", {}, ["targets[0]"]),
    ("targets-credentials", f"targets: ['http://user:{SECRET}@pizza.example.com']\n", {},
     ["targets[0]"]),
    ("targets-too-long", f"targets: ['http://h/{'a' * MAX_TARGET_LENGTH}']\n", {},
     ["targets[0]", "longer than 512"]),
    ("pattern-bad-regex", "allowed_target_patterns: ['https://(']\n", {},
     ["allowed_target_patterns[0]", "regular expression"]),
    ("pattern-empty", "allowed_target_patterns: ['x', '']\n", {}, ["allowed_target_patterns[1]"]),
    ("pattern-null", "allowed_target_patterns: [null]\n", {}, ["allowed_target_patterns[0]"]),
    ("patterns-not-list", "allowed_target_patterns: 'https://.*'\n", {},
     ["allowed_target_patterns: must be a list"]),
    # An empty value of the wrong type is refused, not read as "none".
    ("modules-empty-list", "modules: []\n", {}, ["modules: must map names"]),
    ("modules-zero", "modules: 0\n", {}, ["modules: must map names"]),
    ("targets-empty-mapping", "targets: {}\n", {}, ["targets: must be a list"]),
    ("targets-empty-string", "targets: ''\n", {}, ["targets: must be a list"]),
    ("patterns-zero", "allowed_target_patterns: 0\n", {}, ["allowed_target_patterns: must be"]),
    # A key given twice: PyYAML would keep the last one silently.
    ("duplicate-module", "modules:\n  x: {}\n  x: {read_only: true}\n", {},
     ["line 3", "given twice"]),
    ("duplicate-module-key", _module("timeout: 1s\ntimeout: 2s\n"), {}, ["line 4", "given twice"]),
    ("duplicate-top-level-key", "targets: []\ntargets: []\n", {}, ["line 2", "given twice"]),
]


@pytest.mark.parametrize("text,environ,fragments", [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_a_bad_file_is_one_line_naming_the_key_and_echoing_no_secret(tmp_path, text, environ,
                                                                      fragments):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ConfigError) as caught:
        parse_modules(text, source=SOURCE, environ=environ, base_dir=str(tmp_path))
    line = str(caught.value)
    assert "\n" not in line and line.startswith(f"{SOURCE}: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert SECRET not in line, line


def test_load_modules_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "modules.yml"
    path.write_text(_module("timeout: 0\n"))
    with pytest.raises(ConfigError, match=rf"^config\.file {path}: modules\.x\.timeout: "):
        load_modules(str(path), environ={})
    with pytest.raises(ConfigError, match=r"^config\.file: cannot read .*nope\.yml"):
        load_modules(str(tmp_path / "nope.yml"), environ={})


@pytest.mark.parametrize("line", [
    f"password: !{SECRET}",  # a YAML tag: "could not determine a constructor for the tag ..."
    f"password: *{SECRET}",  # a YAML alias: "found undefined alias ..."
], ids=["tag", "alias"])
def test_invalid_yaml_quotes_no_file_content(line):
    # Regression (fixed): parse_modules (exporter/modules.py, the yaml.YAMLError branch) put PyYAML's
    # `problem` into the message, and for an undefined alias or an unknown tag that text quotes
    # the token from the file. A password pasted inline that starts with '!' or '*' (a common
    # first character) is echoed on stderr, in the log and in POST /-/reload's 500 answer,
    # before the "a password is never written in the file" check can run.
    with pytest.raises(ConfigError) as caught:
        parse(_module(line + "\n"))
    message = str(caught.value)
    assert "not valid YAML at line 3" in message and "\n" not in message, message
    assert SECRET not in message, message


# --- describe() and repr never show the password ------------------------------------------------

def test_describe_and_repr_never_show_the_password(full_file):
    password = "S3cret-desc-91"
    (full_file.parent / "secrets" / "pw.txt").write_text(password + "\n")
    loaded = load_modules(str(full_file), environ={"PIZZA_TEST_MODULE_PW": password})
    assert {m.probe.password for m in loaded.modules.values()} >= {password}
    for module in loaded.modules.values():
        for text in (module.describe(), repr(module), repr(loaded)):
            assert password not in text
        assert "password=<secret>" in module.describe()
    described = loaded.modules["full"].describe()
    assert described == ("full: factory_url=https://Factory.example.com email=probe@jwt.com "
                         "password=<secret> timeout=2s order_timeout=90s slow_threshold=0.5s "
                         "min_interval=0s read_only=true ca_file=(environment)")


def test_describe_of_a_module_built_in_code():
    module = Module("m", ProbeConfig(password="diner-not-shown-7"), 2.5)
    assert "diner-not-shown-7" not in module.describe()
    assert "min_interval=2.5s" in module.describe() and "read_only=false" in module.describe()


# --- ModulesSource: reload swaps only a valid file ----------------------------------------------

class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records():
    logger = logging.getLogger(LOGGER_NAME)
    handler = _Records()
    saved_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(saved_level)


def test_reload_swaps_a_valid_file_and_keeps_the_old_modules_when_broken(tmp_path, monkeypatch,
                                                                         log_records):
    clock = [1000.0]
    monkeypatch.setattr(modules_module, "time", types.SimpleNamespace(time=lambda: clock[0]))
    path = tmp_path / "modules.yml"
    path.write_text("modules:\n  one: {timeout: 1s}\n")
    source = ModulesSource(str(path), ProbeConfig(), environ={"PW": "from-env"})
    told: list[bool] = []
    source.listeners.append(told.append)
    first = source.current
    assert set(first.modules) == {"one"} and source.last_success == 1000.0

    clock[0] = 2000.0
    path.write_text("modules:\n  one: {timeout: 2s}\n  two: {password_env: PW}\n")
    source.reload()
    second = source.current
    assert second is not first and set(second.modules) == {"one", "two"}
    assert second.modules["one"].probe.timeout == 2 and second.modules["two"].probe.password == "from-env"
    assert told == [True] and source.last_success == 2000.0

    clock[0] = 3000.0
    path.write_text("modules:\n  one: {timeout: 0}\n  three: {}\n")
    with pytest.raises(ConfigError, match=r"modules\.one\.timeout"):
        source.reload()
    assert source.current is second  # the very same object: nothing of the broken file is used
    assert told == [True, False] and source.last_success == 2000.0
    failed = [r for r in log_records if r.getMessage() == "config reload failed; keeping the "
              "modules in force"]
    assert failed and "modules.one.timeout" in failed[-1].fields["error"]

    path.unlink()  # a vanished file is broken too
    with pytest.raises(ConfigError, match="cannot read"):
        source.reload()
    assert source.current is second and told == [True, False, False]

    clock[0] = 4000.0
    path.write_text("modules:\n  three: {min_interval: 0}\n")
    source.reload()
    assert set(source.current.modules) == {"three"}
    assert source.current.modules["three"].min_interval == 0
    assert told == [True, False, False, True] and source.last_success == 4000.0


def test_a_broken_file_at_start_up_is_a_config_error(tmp_path):
    path = tmp_path / "modules.yml"
    path.write_text(_module("read_only: maybe\n"))
    with pytest.raises(ConfigError, match=r"modules\.x\.read_only"):
        ModulesSource(str(path), ProbeConfig(), environ={})


def test_reload_refuses_a_file_without_a_required_module(tmp_path):
    """The scheduled journeys' module (``serve --module``) must survive a reload."""
    path = tmp_path / "modules.yml"
    path.write_text("modules:\n  ro: {read_only: true}\n")
    source = ModulesSource(str(path), ProbeConfig(), environ={}, required=["ro"])
    told: list[bool] = []
    source.listeners.append(told.append)
    first = source.current
    path.write_text("modules:\n  other: {}\n")
    with pytest.raises(ConfigError, match=r"^module: no module 'ro' .*known: other"):
        source.reload()
    assert source.current is first and told == [False]
    path.write_text("modules:\n  ro: {read_only: true, min_interval: 0}\n  other: {}\n")
    source.reload()
    assert set(source.current.modules) == {"ro", "other"} and told == [False, True]
    with pytest.raises(ConfigError, match="no module 'gone'"):
        ModulesSource(str(path), ProbeConfig(), environ={}, required=["gone"])


@pytest.mark.parametrize("target", [
    "http://127.0.0.1\\.pizza.test", "http://127.0.0.1%5C.pizza.test", "http://a .pizza.test",
    "http://a\t.pizza.test", "http://a\u3002pizza.test", "http://-a.pizza.test",
    "http://a..pizza.test", "http://h/a\\b", "http://h/%2e%2e", "http://h/a b", "http://h/\x00",
    # numbers a resolver reads as IPv4 in another spelling, and port 0 (requests drops it)
    "http://2130706433:3000", "http://0x7f000001", "http://0", "http://127.1", "http://0x7f.1",
    "http://0177.0.0.1", "http://h:0", "http://h:",
    # dot and empty segments urllib3 resolves before sending
    "http://h/team-a/../team-b", "http://h/./a", "http://h//a",
    # junk around a bracketed address (urlsplit drops it), an IPv4-mapped IPv6, a long label
    "http://evil.test[::1]:81", "http://[::1]x.pizza.test", "http://[::ffff:127.0.0.1]",
    "https://pizza-service." + "a" * 64 + ".click",
])
def test_normalize_target_refuses_what_url_parsers_read_differently(target):
    with pytest.raises(ConfigError) as caught:
        normalize_target(target)
    assert str(caught.value).startswith("target: ")


@pytest.mark.parametrize("target,normalized", [
    ("http://[::1]:8080/", "http://[::1]:8080"), ("HTTPS://Pizza-Service.Example.COM",
                                                  "https://pizza-service.example.com"),
    ("http://h:80/a/b_c-d.e~f/", "http://h:80/a/b_c-d.e~f"), ("http://xn--bcher-kva.example",
                                                             "http://xn--bcher-kva.example"),
    ("http://[0:0:0:0:0:0:0:1]:8080", "http://[::1]:8080"),  # one spelling per address
    ("http://h:00080", "http://h:80"), ("http://pizza_svc:3000", "http://pizza_svc:3000"),
    ("http://10.0.0.1/x", "http://10.0.0.1/x"),
])
def test_normalize_target_keeps_plain_urls(target, normalized):
    assert normalize_target(target) == normalized
