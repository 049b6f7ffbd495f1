"""exporter.transport (what every client trusts and takes from the environment),
exporter.discovery (the factory the service names) and the incident's impact wording."""

from __future__ import annotations

import http.server
import threading

import pytest

from exporter import transport
from exporter.config import PUBLIC_FACTORY_URL, ConfigError, ProbeConfig
from exporter.discovery import FactoryDirectory
from exporter.incident import Incident
from exporter.journey import run_journey
from exporter.postmortem import render
from exporter.result import StepFailure

from conftest import FakeClock

# --- transport -----------------------------------------------------------------------------

def test_ca_bundle_order_flag_then_variables_then_certifi():
    env = {"SSL_CERT_FILE": "/c", "CURL_CA_BUNDLE": "/b", "REQUESTS_CA_BUNDLE": "/a"}
    assert transport.ca_bundle("/flag", env) == "/flag"
    assert transport.ca_bundle(None, env) == "/a"
    assert transport.ca_bundle(None, {"SSL_CERT_FILE": "/c", "CURL_CA_BUNDLE": "/b"}) == "/b"
    assert transport.ca_bundle(None, {"SSL_CERT_FILE": "/c"}) == "/c"
    assert transport.ca_bundle(None, {"REQUESTS_CA_BUNDLE": ""}) is True
    assert transport.ca_bundle(None, {}) is True  # requests' own bundle; never False


def test_a_ca_variable_naming_a_missing_file_is_an_error_at_start(tmp_path):
    with pytest.raises(ConfigError, match="REQUESTS_CA_BUNDLE"):
        transport.check_environment({"REQUESTS_CA_BUNDLE": str(tmp_path / "missing.pem")})
    transport.check_environment({"SSL_CERT_FILE": str(tmp_path)})  # a directory exists: fine
    transport.check_environment({})


@pytest.mark.parametrize("content,message", [(b"", "no PEM"), (b"hello\n", "no PEM"),
                                             (None, "cannot read")])
def test_check_ca_file_refuses_what_is_not_pem(tmp_path, content, message):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        transport.check_ca_file(str(path))


@pytest.mark.parametrize("content", [
    b"", b"hello\n", b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",  # base64, not DER
])
def test_a_ca_variable_that_holds_no_pem_certificate_is_refused_without_openssl(tmp_path, content):
    path = tmp_path / "bundle.pem"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="SSL_CERT_FILE: .* holds no PEM certificate"):
        transport.check_environment({"SSL_CERT_FILE": str(path)})


def test_the_system_bundle_in_a_ca_variable_is_checked_without_loading_it(monkeypatch, tmp_path):
    # loading a bundle is OpenSSL's first use (~1.3 MiB of serve's memory): the variables,
    # set machine-wide, are checked in Python; --ca-file still goes through OpenSSL
    from exporter.simkeys import make_tls_files

    ca = make_tls_files(str(tmp_path), "127.0.0.1")[0]

    def no_openssl(*args, **kwargs):
        raise AssertionError("an SSLContext was made for a CA variable")

    monkeypatch.setattr(transport.ssl, "SSLContext", no_openssl)
    transport.check_environment({"REQUESTS_CA_BUNDLE": ca})
    with pytest.raises(AssertionError):
        transport.check_ca_file(ca)


@pytest.mark.parametrize("shape", ["trusted", "blank after begin"])
def test_a_ca_variable_bundle_openssl_loads_is_accepted(tmp_path, shape):
    # requests hands the variable's file to OpenSSL, which loads these shapes too: refusing
    # them at start stopped serve on a machine whose SSL_CERT_FILE is such a bundle
    import ssl

    from exporter.simkeys import make_tls_files

    ca = make_tls_files(str(tmp_path), "127.0.0.1")[0]
    with open(ca, "rb") as handle:
        pem = handle.read()
    if shape == "trusted":  # Fedora's ca-bundle.trust.crt
        pem = pem.replace(b"BEGIN CERTIFICATE", b"BEGIN TRUSTED CERTIFICATE")
        pem = pem.replace(b"END CERTIFICATE", b"END TRUSTED CERTIFICATE")
    else:
        pem = pem.replace(b"CERTIFICATE-----\n", b"CERTIFICATE----- \n", 1)
    path = tmp_path / "bundle.crt"
    path.write_bytes(pem)
    assert ssl.create_default_context(cafile=str(path)).cert_store_stats()["x509_ca"] == 1
    transport.check_environment({"SSL_CERT_FILE": str(path)})


def test_a_ca_variable_block_whose_end_does_not_match_its_begin_is_refused(tmp_path):
    from exporter.simkeys import make_tls_files

    ca = make_tls_files(str(tmp_path), "127.0.0.1")[0]
    with open(ca, "rb") as handle:
        pem = handle.read().replace(b"END CERTIFICATE", b"END TRUSTED CERTIFICATE")
    path = tmp_path / "bundle.crt"
    path.write_bytes(pem)
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        transport.check_environment({"SSL_CERT_FILE": str(path)})


def test_sessions_never_trust_netrc_and_verify_never_turns_off():
    session = transport.new_session(None)
    assert session.trust_env is False and session.verify is not False


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.requestline, self.headers.get("Authorization")))
        body = b'{"message": "from the recorder"}'
        self.send_response(502)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder():
    handler = type("Recorder", (_Recorder,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, handler.seen
    server.shutdown()
    server.server_close()


def test_a_netrc_never_adds_credentials(recorder, tmp_path, monkeypatch):
    server, seen = recorder
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login probe password netrc-secret-77\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    result = run_journey(ProbeConfig(service_url=url, factory_url=url, timeout=2))
    assert result.reason == "http_error" and seen
    assert all(auth is None for _, auth in seen), seen


def test_https_proxy_and_no_proxy_are_honoured(recorder, monkeypatch):
    server, seen = recorder
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    target = "http://pizza-service.example:3000"  # only the proxy on loopback is ever asked
    result = run_journey(ProbeConfig(service_url=target, factory_url=target, timeout=2))
    assert seen and seen[0][0] == f"GET {target}/ HTTP/1.1", seen
    assert result.detail == "HTTP 502: from the recorder"
    monkeypatch.setenv("NO_PROXY", "pizza-service.example")
    assert transport.proxies_for(target + "/") == {}


@pytest.mark.parametrize("url", ["http://127.0.0.1:9816/recovery/latest", "http://[::1]:3000/",
                                 "http://localhost:3000/", "https://127.9.9.9/api/order/verify"])
def test_loopback_never_goes_through_a_proxy(monkeypatch, url):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert transport.proxies_for(url) == {}
    assert transport.proxies_for("http://pizza-service.example/")  # others do


# --- discovery -----------------------------------------------------------------------------

def asker(*answers):
    calls = []

    def ask():
        calls.append(1)
        answer = answers[min(len(calls), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return ask, calls


SERVICE = ProbeConfig(service_url="http://shop.example:3000")


def test_a_configured_factory_is_used_without_asking():
    ask, calls = asker("http://other.example")
    choice = FactoryDirectory().choose(ProbeConfig(factory_url="https://f.example"), ask)
    assert (choice.url, choice.source, calls) == ("https://f.example", "configured", [])


def test_the_service_named_factory_is_remembered_for_the_ttl():
    clock = FakeClock()
    directory = FactoryDirectory(ttl=300, clock=clock)
    ask, calls = asker("https://Factory.Example/", "https://new.example")
    assert directory.choose(SERVICE, ask).url == "https://factory.example"  # normalized
    clock.now += 299
    assert directory.choose(SERVICE, ask).url == "https://factory.example" and len(calls) == 1
    clock.now += 2
    choice = directory.choose(SERVICE, ask)
    assert (choice.url, choice.source, len(calls)) == ("https://new.example", "service", 2)


def test_a_service_that_does_not_say_gets_the_public_factory():
    ask, _ = asker(None)
    choice = FactoryDirectory().choose(SERVICE, ask)
    assert (choice.url, choice.source) == (PUBLIC_FACTORY_URL, "default") and choice.note


@pytest.mark.parametrize("named", ["ftp://f.example", "http://user:pw@f.example",
                                   "http://0x7f.1/", "https://f.example/../x"])
def test_junk_named_by_the_service_fails_verify_and_never_goes_public(named):
    ask, calls = asker(named, "https://f.example")
    directory = FactoryDirectory()
    with pytest.raises(StepFailure) as failure:
        directory.choose(SERVICE, ask)
    assert failure.value.reason == "bad_response" and named not in failure.value.detail
    assert directory.choose(SERVICE, ask).url == "https://f.example" and len(calls) == 2


def test_a_failed_question_uses_the_last_answer_and_without_one_fails():
    clock = FakeClock()
    directory = FactoryDirectory(ttl=300, clock=clock)
    ask, calls = asker(StepFailure("timeout", "no answer within 1s"))
    with pytest.raises(StepFailure, match="cannot learn the factory"):  # never the public one
        directory.choose(SERVICE, ask)
    good, _ = asker("https://f.example")
    assert directory.choose(SERVICE, good).url == "https://f.example"
    clock.now += 301  # the answer is old, and the service does not answer now
    choice = directory.choose(SERVICE, ask)
    assert (choice.url, choice.source) == ("https://f.example", "service")
    assert "the last answer is used again" in choice.note and len(calls) == 2


# --- the incident's impact, by chaos ---------------------------------------------------------

@pytest.mark.parametrize("mode,says,never", [
    ("throttle", "were likely slow, not failed: the slowest synthetic order took 32.1 s",
     "failed the same way"),
    ("fail", "likely failed the same way", "slow"),
    ("badjwt", "forged pizza JWTs", "slow"),
    ("login auth_error", "may have been affected", "likely failed"),
])
def test_the_impact_is_worded_by_the_chaos(mode, says, never):
    incident = Incident(id="i", opened_at=1.0, detected_by="probe", chaos_mode=mode,
                        slowest_order_seconds=32.07)
    impact = render(incident).split("## Impact\n", 1)[1].split("\n\n", 1)[0]
    assert says in impact and never not in impact, impact


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_ca_file_that_is_no_regular_file_is_refused_at_once(tmp_path, kind):
    import os

    path = {"fifo": str(tmp_path / "fifo"), "device": "/dev/zero", "directory": str(tmp_path)}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block until a writer comes: never
    with pytest.raises(ConfigError, match="ca-file: cannot read"):
        transport.check_ca_file(path)


def test_a_real_ca_bundle_is_accepted(tmp_path):
    from exporter.simkeys import make_tls_files

    ca, _cert, _key = make_tls_files(str(tmp_path), "127.0.0.1")
    assert transport.check_ca_file(ca) == ca


@pytest.mark.parametrize("kind", ["fifo", "device", "not pem", "nul byte"])
def test_a_ca_variable_that_is_no_pem_file_is_an_error_at_start(tmp_path, kind):
    import os

    path = {"fifo": str(tmp_path / "fifo"), "device": "/dev/zero",
            "not pem": str(tmp_path / "x.pem"), "nul byte": "a\0b"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    if kind == "not pem":
        (tmp_path / "x.pem").write_text("hello\n")
    with pytest.raises(ConfigError, match="SSL_CERT_FILE"):
        transport.check_environment({"SSL_CERT_FILE": path})
