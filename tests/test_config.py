import pytest

from exporter.config import (
    ConfigError,
    ProbeConfig,
    parse_duration,
    parse_http_url,
    parse_listen_address,
    read_secret_file,
)


@pytest.mark.parametrize("text,seconds", [
    ("15", 15.0), ("0.5", 0.5), ("15s", 15.0), ("1m", 60.0), ("1m30s", 90.0),
    ("500ms", 0.5), ("2h", 7200.0), (" 3s ", 3.0), ("1.5s", 1.5),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-1", "-5s", "0", "0s", "abc", "15x", "s", "1m x", "nan", "inf", "1e999"])
def test_bad_durations_are_one_line_errors(text):
    with pytest.raises(ConfigError) as info:
        parse_duration(text, name="interval")
    assert "\n" not in str(info.value) and str(info.value).startswith("interval: ")


@pytest.mark.parametrize("text", ["http://localhost:3000", "https://pizza-service.example.com/",
                                  "http://127.0.0.1:3000/base"])
def test_good_urls(text):
    assert parse_http_url(text) == text.rstrip("/")


@pytest.mark.parametrize("text,message", [
    ("localhost:3000", "must start with http:// or https://"),
    ("ftp://host", "must start with http:// or https://"),
    ("http://", "has no host"),
    ("http://host:99999", "not a valid URL"),
    ("http://user:hunter2@host", "must not contain a user or password"),
    ("http://host/?x=1", "must not contain a query or fragment"),
])
def test_bad_urls(text, message):
    with pytest.raises(ConfigError) as info:
        parse_http_url(text, name="service-url")
    assert message in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("text,expected", [
    (":9816", ("0.0.0.0", 9816)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9816", ("::1", 9816)),
])
def test_listen_addresses(text, expected):
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["9816", "host:", "host:abc", ":70000", ""])
def test_bad_listen_addresses(text):
    with pytest.raises(ConfigError):
        parse_listen_address(text)


def test_secret_file(tmp_path):
    path = tmp_path / "pw"
    path.write_text("s3cret\nignored\n")
    assert read_secret_file(str(path)) == "s3cret"
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_secret_file(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret_file(str(tmp_path / "missing"))


def test_probe_config_validates_and_hides_password():
    with pytest.raises(ConfigError):
        ProbeConfig(service_url="nope")
    with pytest.raises(ConfigError):
        ProbeConfig(timeout=0)
    assert "diner" not in repr(ProbeConfig(password="diner"))
