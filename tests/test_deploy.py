"""The deployment files: Dockerfile, compose stack, Kubernetes manifests, checked without a
Docker engine (fast: the image's build and install steps are replayed in a fresh venv from a
clean copy of the tree). tests/test_image.py builds and runs the image itself."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from promstack import REPO, binary, copy_from_repo

COMPOSE = os.path.join(REPO, "deploy", "compose")
KUBE = os.path.join(REPO, "deploy", "kubernetes")


def run(*args, cwd=REPO, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd)


def tool(name: str) -> str:
    """A console script installed with the test extras (next to this Python) or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else binary(name)


# --- Dockerfile ------------------------------------------------------------------------------

def test_hadolint_reports_nothing():
    out = run(tool("hadolint"), "Dockerfile")
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr


def test_dockerfile_essentials():
    text = open(os.path.join(REPO, "Dockerfile")).read()
    assert re.search(r"^FROM python:3\.\d+-slim AS build$", text, re.M)  # builds the wheel
    final = text[text.rindex("\nFROM "):]  # the image itself: no source tree, only the wheel
    assert re.match(r"\nFROM python:3\.\d+-slim\n", final) and "COPY exporter" not in final
    assert 'ENTRYPOINT ["pizza-probe"]' in final and 'CMD ["serve"]' in final
    assert re.search(r"^USER 10001:10001$", final, re.M) and "EXPOSE 9816 9817" in final
    assert "--uid 10001 --gid 10001" in final and "--gid 10001 pizza" in final
    assert "chown -R 10001:10001 /var/lib/pizza-probe" in final  # the incident volume's owner
    # no URL: the check follows the command (tests/test_image.py runs it)
    assert 'CMD ["pizza-probe", "healthcheck"]' in final
    assert "curl" not in text and "wget" not in text
    assert "org.opencontainers.image.title" in final
    assert "PASSWORD" not in text and "TOKEN" not in text  # no secrets baked in
    # the dependency layer comes before the code, so a code change keeps it cached
    assert final.index("COPY requirements.txt") < final.index("COPY --from=build")
    # only what requirements.txt pins, file by file (its hashes): tests below check the pins
    assert "pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt" in final
    assert re.search(r"^COPY setup.cfg pyproject.toml README.md LICENSE \./$", text, re.M)


def pins(filename: str) -> dict[str, tuple[str, list[str], list[str]]]:
    """A pip-compile output: name -> (version, its sha256 hashes, what it is there for)."""
    found: dict[str, tuple[str, list[str], list[str]]] = {}
    name = ""
    for line in open(os.path.join(REPO, filename)).read().splitlines():
        pinned = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if pinned:
            name = pinned.group(1).lower()
            found[name] = (pinned.group(2), [], [])
        elif name and (digest := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line)):
            found[name][1].append(digest.group(1))
        elif name and (via := re.match(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9._-]+)", line)):
            if via.group(1) != "via":
                found[name][2].append(via.group(1).lower())
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"{filename}: unexpected line {line!r}")
    return found


def declared(key: str, section: str = "options") -> dict[str, SpecifierSet]:
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    wanted = {}
    for line in parser[section][key].splitlines():
        if line.strip():
            requirement = Requirement(line.strip())
            wanted[canonicalize_name(requirement.name)] = requirement.specifier
    return wanted


def test_requirements_pin_every_dependency_with_hashes():
    """requirements.txt (the image's) is compiled from setup.cfg's install_requires: each of
    them and everything under them pinned (==) with hashes, nothing else; `make requirements`
    regenerates it."""
    text = open(os.path.join(REPO, "requirements.txt")).read()
    assert "#    make requirements\n" in text[:300]  # the header says how to regenerate it
    pinned = pins("requirements.txt")
    wanted = declared("install_requires")
    assert "urllib3" in wanted  # the code imports it (exporter/urls.py): declared, not assumed
    for name, spec in wanted.items():
        assert name in pinned, f"{name} is in install_requires but not pinned"
        assert spec.contains(pinned[name][0], prereleases=True), f"{name}=={pinned[name][0]} is not {spec}"
    for name, (version, hashes, via) in pinned.items():
        assert hashes, f"{name}=={version} has no hash: the image installs with --require-hashes"
        # every pin is there for install_requires, directly or through another pin
        assert via and all(v == "pizza-probe" or v in pinned for v in via), f"{name} via {via}"
    assert {n for n, (_, _, via) in pinned.items() if "pizza-probe" in via} == set(wanted)


def test_test_requirements_pin_the_test_extra_and_the_build_backend_alike():
    """requirements-test.txt (make install): the test extra and install_requires, pinned with
    hashes, at the same versions as requirements.txt, plus the build backend that the editable
    install runs without build isolation."""
    test_pins, runtime_pins = pins("requirements-test.txt"), pins("requirements.txt")
    for name, spec in {**declared("install_requires"), **declared("test", "options.extras_require")}.items():
        assert name in test_pins, f"{name} is not pinned in requirements-test.txt"
        assert spec.contains(test_pins[name][0], prereleases=True), name
    assert all(hashes for _, hashes, _ in test_pins.values())
    differ = {n: (v, test_pins[n][0]) for n, (v, _, _) in runtime_pins.items() if test_pins[n][0] != v}
    assert not differ, f"pinned differently in requirements.txt and requirements-test.txt: {differ}"
    backend = Requirement(tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["build-system"]["requires"][0])
    assert backend.specifier.contains(test_pins[backend.name][0])
    makefile = open(os.path.join(REPO, "Makefile")).read()
    assert "--require-hashes -r requirements-test.txt" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile


def test_image_install_step_from_a_clean_copy(tmp_path):
    """What the Dockerfile does: a wheel from the source, then in a fresh venv the requirements
    and the wheel without deps, then run it. Only what .dockerignore lets into the build
    context is copied."""
    context = tmp_path / "context"
    context.mkdir()
    kept = [line[1:].strip().rstrip("/") for line in open(os.path.join(REPO, ".dockerignore"))
            if line.startswith("!")]
    copy_from_repo(kept, context)
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    pip = str(venv / "bin" / "pip")
    out = run(pip, "--disable-pip-version-check", "wheel", "--no-cache-dir", "--no-deps",
              "--wheel-dir", str(tmp_path / "wheels"), ".", cwd=context)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("pizza_probe-*.whl")
    for args in (["install", "--no-cache-dir", "--require-hashes", "-r", "requirements.txt"],
                 ["install", "--no-cache-dir", "--no-deps", str(wheel)]):
        out = run(pip, "--disable-pip-version-check", *args, cwd=context)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    out = run(str(venv / "bin" / "pizza-probe"), "--help", cwd=tmp_path)
    assert out.returncode == 0 and "serve" in out.stdout and "sidecar" in out.stdout, out.stderr
    health = run(str(venv / "bin" / "pizza-probe"), "healthcheck", "http://127.0.0.1:9/healthz")
    assert health.returncode == 1 and health.stderr.startswith("unhealthy:")


# --- compose ---------------------------------------------------------------------------------

def compose() -> dict:
    with open(os.path.join(COMPOSE, "docker-compose.yml")) as handle:
        return yaml.safe_load(handle)


def test_docker_compose_config_accepts_the_stack(tmp_path):
    copy = tmp_path / "deploy" / "compose"
    shutil.copytree(COMPOSE, copy)
    shutil.copy(copy / ".env.example", copy / ".env")  # as the user does
    out = run(binary("docker-compose"), "-f", "docker-compose.yml", "config", "-q", cwd=copy)
    assert out.returncode == 0, out.stdout + out.stderr
    out = run(binary("docker-compose"), "-f", "docker-compose.yml", "--profile", "demo",
              "config", "-q", cwd=copy)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_wires_the_shipped_files():
    services = compose()["services"]
    assert set(services) >= {"pizza-probe", "pizza-probe-sidecar", "prometheus", "alertmanager", "grafana"}
    assert "../../alerts:/etc/prometheus/rules:ro" in services["prometheus"]["volumes"]
    # Alertmanager runs the shipped route unchanged: the sidecar's service name is its host
    shipped = "../../alerts/alertmanager/alertmanager.yml"
    assert f"{shipped}:/etc/alertmanager/alertmanager.yml:ro" in services["alertmanager"]["volumes"]
    route = yaml.safe_load(open(os.path.join(REPO, "alerts", "alertmanager", "alertmanager.yml")))
    hooks = [h["url"] for r in route["receivers"] for h in r.get("webhook_configs", [])]
    assert "http://pizza-probe-sidecar:9817/alertmanager" in hooks
    assert "../../dashboards:/var/lib/grafana/dashboards:ro" in services["grafana"]["volumes"]
    env = open(os.path.join(COMPOSE, ".env.example")).read()
    for key in ("PIZZA_PROBE_HANDOFF_TOKEN", "PIZZA_RECOVERY_WEBHOOK_TOKEN",
                "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(rf"^{key}=", env, re.M), key
    # the target and the probe's user are there to set; unset, the demo profile's simulator
    for key in ("PIZZA_SERVICE_URL", "PIZZA_FACTORY_URL", "PIZZA_PROBE_EMAIL", "PIZZA_PROBE_PASSWORD"):
        assert re.search(rf"^#{key}=", env, re.M), key
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["simulator"]["command"][0] == "simulate" and "ports" not in services["simulator"]
    for name in ("pizza-probe", "pizza-probe-sidecar"):
        assert services[name]["environment"] == {
            "PIZZA_SERVICE_URL": "${PIZZA_SERVICE_URL:-http://simulator:3000}",
            "PIZZA_FACTORY_URL": "${PIZZA_FACTORY_URL:-http://simulator:3001}"}
    # the image's own health check follows the command: no per-service override is needed
    assert all("healthcheck" not in services[name]
               for name in ("pizza-probe", "pizza-probe-sidecar", "simulator"))
    assert ".env" in open(os.path.join(REPO, ".gitignore")).read()


def test_promtool_checks_the_compose_prometheus_config(tmp_path):
    path = os.path.join(COMPOSE, "prometheus.yml")
    out = run(binary("promtool"), "check", "config", "--syntax-only", path)
    assert out.returncode == 0, out.stdout + out.stderr
    # fully, with the rule file where the compose volume puts it
    config = yaml.safe_load(open(path))
    config["rule_files"] = [p.replace("/etc/prometheus/rules", os.path.join(REPO, "alerts"))
                            for p in config["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = run(binary("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert out.returncode == 0 and "SUCCESS: 15 rules found" in out.stdout, out.stdout + out.stderr
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"pizza-probe", "pizza-probe-sidecar"}


def test_grafana_provisioning_loads_the_data_source_and_dashboards():
    base = os.path.join(COMPOSE, "grafana", "provisioning")
    (source,) = yaml.safe_load(open(os.path.join(base, "datasources", "prometheus.yml")))["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load(open(os.path.join(base, "dashboards", "pizza-probe.yml")))["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# --- Kubernetes ------------------------------------------------------------------------------

def manifests() -> dict[str, dict]:
    found = {}
    for name in sorted(os.listdir(KUBE)):
        if name.endswith(".yaml"):
            for doc in yaml.safe_load_all(open(os.path.join(KUBE, name))):
                found[doc["kind"]] = doc
    return found


def test_kubernetes_manifests_parse_and_agree():
    docs = manifests()
    assert set(docs) == {"Deployment", "Secret", "Service", "ServiceMonitor", "PrometheusRule"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert containers["exporter"]["args"][0] == "serve" and containers["sidecar"]["args"][0] == "sidecar"
    for container in containers.values():
        assert container["envFrom"][0]["secretRef"]["name"] == docs["Secret"]["metadata"]["name"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    service_ports = {p["name"] for p in docs["Service"]["spec"]["ports"]}
    container_ports = {p["name"] for c in containers.values() for p in c["ports"]}
    assert service_ports == container_ports == {"metrics", "sidecar"}
    endpoints = {e["port"]: e["relabelings"][0]["replacement"]
                 for e in docs["ServiceMonitor"]["spec"]["endpoints"]}
    assert endpoints == {"metrics": "pizza-probe", "sidecar": "pizza-probe-sidecar"}
    assert set(docs["Secret"]["stringData"]) >= {"PIZZA_PROBE_PASSWORD", "PIZZA_RECOVERY_WEBHOOK_TOKEN"}


def test_prometheusrule_is_generated_from_the_rule_file(tmp_path):
    rules = yaml.safe_load(open(os.path.join(REPO, "alerts", "pizza-probe.rules.yml")))
    assert manifests()["PrometheusRule"]["spec"]["groups"] == rules["groups"]
    fresh = tmp_path / "prometheusrule.yaml"
    out = run(sys.executable, os.path.join(KUBE, "generate_prometheusrule.py"), str(fresh))
    assert out.returncode == 0, out.stderr
    assert fresh.read_text() == open(os.path.join(KUBE, "prometheusrule.yaml")).read(), \
        "prometheusrule.yaml is stale: run `make k8s-rules`"


@pytest.mark.parametrize("path", ["deploy/compose/.env.example", "deploy/kubernetes/secret.example.yaml"])
def test_secret_templates_hold_placeholders_only(path):
    text = open(os.path.join(REPO, path)).read()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|TOKEN)\S*[=:]", line) and not line.lstrip().startswith("#"):
            assert "change-me" in line, line
