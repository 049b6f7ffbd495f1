"""Real Prometheus and Alertmanager (Debian packages) on loopback, for the alerting tests."""

from __future__ import annotations

import os
import shutil
import socket

import pytest
import requests
import yaml

from conftest import poll
from processes import Managed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def copy_from_repo(names, into) -> None:
    """Copy the files and folders ``names`` (relative to the repository) into ``into``,
    without __pycache__."""
    for name in names:
        source = os.path.join(REPO, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(into, name),
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, os.path.join(into, name))
RULES = os.path.join(REPO, "alerts", "pizza-probe.rules.yml")
ALERTMANAGER_CONFIG = os.path.join(REPO, "alerts", "alertmanager", "alertmanager.yml")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run the tests through 'make test', which installs it"
    return path


class Daemon(Managed):
    """A server binary that is ready once ``ready_url`` answers 200."""

    def __init__(self, args: list[str], log_path, ready_url: str) -> None:
        super().__init__(args, log_path)

        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"{args[0]} exited: {log_path.read_text()[-2000:]}")
            return requests.get(ready_url, timeout=2).status_code == 200

        poll(ready, timeout=30, what=f"{os.path.basename(args[0])} to be ready")


class ConfiguredServer(Daemon):
    """A Prometheus-family server on a free loopback port, its config written from a dict,
    its data under tmp_path, ready once /-/ready answers."""

    binary = ""
    storage_flag = ""
    extra_flags: tuple[str, ...] = ()

    def __init__(self, tmp_path, config: dict) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_path = tmp_path / f"{self.binary}.yml"
        config_path.write_text(yaml.safe_dump(config))
        super().__init__([
            binary(self.binary), f"--config.file={config_path}",
            f"{self.storage_flag}={tmp_path / f'{self.binary}-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", *self.extra_flags,
        ], tmp_path / f"{self.binary}.log", self.url + "/-/ready")


class Prometheus(ConfiguredServer):
    binary = "prometheus"
    storage_flag = "--storage.tsdb.path"

    def query(self, expr: str) -> list:
        answer = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10).json()
        if answer.get("status") != "success":
            raise AssertionError(f"query failed: {expr!r}: {answer.get('error')}")
        return answer["data"]["result"]

    def alerts(self, name: str) -> list[dict]:
        data = requests.get(self.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in data if a["labels"].get("alertname") == name]


class Alertmanager(ConfiguredServer):
    binary = "prometheus-alertmanager"
    storage_flag = "--storage.path"
    extra_flags = ("--cluster.listen-address=",)  # no gossip port on every interface


def shipped_alertmanager_config(sidecar_url: str, token_file: str, humans_url: str,
                                wait: str = "1s") -> dict:
    """alerts/alertmanager/alertmanager.yml with only its addresses and intervals overridden."""
    with open(ALERTMANAGER_CONFIG) as handle:
        config = yaml.safe_load(handle)
    for route in [config["route"], *config["route"].get("routes", [])]:
        for key in ("group_wait", "group_interval"):
            route[key] = wait
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            if receiver["name"] == "pizza-probe-sidecar":
                hook["url"] = sidecar_url
                hook["http_config"]["authorization"]["credentials_file"] = token_file
            else:
                hook["url"] = humans_url
    return config


class WebhookCatcher:
    """A loopback receiver that records the alert names Alertmanager posts to it."""

    def __init__(self) -> None:
        import json as _json

        from exporter.httpserver import BackgroundServer, QuietHandler

        self.alerts: list[str] = []
        outer = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                try:
                    outer.alerts += [a["labels"]["alertname"] for a in _json.loads(body)["alerts"]]
                except (ValueError, KeyError, TypeError):
                    outer.alerts.append("<malformed>")
                self.send_body(200, b"{}", "application/json")

        self.server = BackgroundServer("127.0.0.1", 0, Handler).start()
        self.url = self.server.url("/")

    def stop(self) -> None:
        self.server.stop()
