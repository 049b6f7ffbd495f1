"""Fleet mode with a real Prometheus, and the fleet examples users copy (deploy/fleet/).

A real Prometheus on loopback scrapes three simulated JWT Pizza services through the exporter's
/probe, with the multi-target relabeling of the shipped deploy/fleet/prometheus.yml, and sees
pizza_probe_success per target: 1, 1 and 0 for the one whose factory fails. Then every shipped
Prometheus config passes promtool, the file_sd file lists 200 targets the shipped modules file
allows, and the hashmod shards split those targets between the exporter replicas exactly."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from exporter.config import ProbeConfig, parse_duration
from exporter.fleet import ProbeRefused, ProbeService
from exporter.modules import ModulesSource, load_modules, normalize_target

from conftest import poll_until_equal, set_chaos
from promstack import REPO, Prometheus, binary

FLEET = os.path.join(REPO, "deploy", "fleet")
FLEET_PROMETHEUS = os.path.join(FLEET, "prometheus.yml")
MODULES = os.path.join(FLEET, "modules.yml")
FLEET_RULES = os.path.join(FLEET, "pizza-fleet.rules.yml")
SIGNING_KEY = b"k" * 32  # one factory verifies every simulator's pizzas, as the real one does
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def read_yaml(path: str):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def fleet_job(config: dict, name: str = "pizza-fleet") -> dict:
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == name]
    return job


def hostport(url: str) -> str:
    return url.split("//", 1)[1]


# --- a real Prometheus scrapes three targets through /probe ----------------------------------

def test_prometheus_scrapes_three_targets_through_probe_and_sees_success_per_target(
        make_simulator, processes, tmp_path):
    healthy, read_only, failing = (make_simulator(signing_key=SIGNING_KEY) for _ in range(3))
    set_chaos(failing, "fail")
    urls = {"healthy": healthy.service_url, "read_only": read_only.service_url,
            "failing": failing.service_url}
    (tmp_path / "password").write_text("diner\n")
    modules_file = tmp_path / "modules.yml"
    modules_file.write_text(yaml.safe_dump({
        "modules": {
            # every service's pizzas verify at one factory: the healthy simulator's
            "default": {"factory_url": healthy.factory_url,
                        "password_env": "PIZZA_PROBE_PASSWORD", "min_interval": "0s"},
            "read_only": {"factory_url": healthy.factory_url, "password_file": "password",
                          "read_only": True, "min_interval": "0s"},
        },
        "targets": [urls["healthy"], urls["read_only"]],
        # the third is allowed by a pattern, anchored and narrow, as the shipped file's
        "allowed_target_patterns": [re.escape(urls["failing"])],
    }))
    exporter = processes.start("serve", "--config.file", str(modules_file),
                               env={"PIZZA_PROBE_PASSWORD": "diner"})
    assert "targets=\"none (/probe only)\"" in exporter.logs()

    # The shipped job, its file_sd swapped for the three simulators and its exporter address
    # for ours: the relabeling under test is exactly the one users copy.
    shipped = read_yaml(FLEET_PROMETHEUS)
    job = fleet_job(shipped)
    assert job["metrics_path"] == "/probe" and job["params"] == {"module": ["default"]}
    assert job["relabel_configs"][0] == {"source_labels": ["__address__"],
                                         "target_label": "__param_target"}
    assert {"source_labels": ["__param_target"], "target_label": "instance"} in job["relabel_configs"]
    assert job["relabel_configs"][-1]["target_label"] == "__address__"
    job = dict(job, scrape_interval="1s", scrape_timeout="1s", static_configs=[
        {"targets": [urls["healthy"], urls["failing"]]},
        {"targets": [urls["read_only"]], "labels": {"module": "read_only"}},
    ])
    del job["file_sd_configs"]
    job["relabel_configs"] = [dict(rule) for rule in job["relabel_configs"]]
    job["relabel_configs"][-1]["replacement"] = hostport(exporter.url)
    own = dict(fleet_job(shipped, "pizza-probe-fleet-exporter"), scrape_interval="1s",
               scrape_timeout="1s", static_configs=[{"targets": [hostport(exporter.url)]}])
    prometheus = Prometheus(tmp_path, {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [job, own],
    })
    try:
        def observe() -> dict:
            def by_instance(expr, key=None):
                return sorted(
                    (r["metric"]["instance"], *(r["metric"].get(k) for k in key or ()), r["value"][1])
                    for r in prometheus.query(expr))
            return {
                "success": by_instance('pizza_probe_success{job="pizza-fleet"}'),
                "up": by_instance('up{job="pizza-fleet"}'),
                "failure_info": by_instance('pizza_probe_failure_info{job="pizza-fleet"}',
                                            ("step", "reason")),
                "chaos_link_seen": by_instance('pizza_probe_chaos_link_seen{job="pizza-fleet"}'),
                "order_step": [i for i, _ in by_instance(
                    'pizza_probe_step_duration_seconds{job="pizza-fleet", step="order"}')],
                "module_label": by_instance('pizza_probe_success{job="pizza-fleet", module!=""}',
                                            ("module",)),
            }

        expected = {
            "success": sorted([(urls["healthy"], "1"), (urls["read_only"], "1"),
                               (urls["failing"], "0")]),
            "up": sorted((url, "1") for url in urls.values()),
            "failure_info": [(urls["failing"], "order", "factory_error", "1")],
            "chaos_link_seen": sorted([(urls["healthy"], "0"), (urls["read_only"], "0"),
                                       (urls["failing"], "1")]),
            "order_step": sorted([urls["healthy"], urls["failing"]]),  # read_only orders nothing
            "module_label": [(urls["read_only"], "read_only", "1")],
        }
        poll_until_equal(observe, expected)

        # the exporter's own view, through its own job: journeys ran, nothing was refused
        own_metrics = poll_query(prometheus, 'pizza_probe_fleet_probes_total{outcome="journey"} >= 3')
        assert own_metrics[0]["metric"]["job"] == "pizza-probe-fleet-exporter"
        (refused,) = prometheus.query('pizza_probe_fleet_probes_total{outcome="refused"}')
        assert refused["value"][1] == "0"
        (reloaded,) = prometheus.query("pizza_probe_config_last_reload_successful")
        assert reloaded["value"][1] == "1"
        # the example alert's expression reads these series and finds the failing service
        rule = fleet_rule("PizzaFleetServiceFailing")
        assert urls["failing"] in {r["metric"]["instance"] for r in prometheus.query(rule["expr"])}
    finally:
        prometheus.stop()
    # every journey ordered from the simulators, the failing one's factory included; the
    # read-only service saw logins but no order
    assert healthy.requests[("POST", "/api/order")] >= 1
    assert failing.requests[("POST", "/api/order")] >= 1
    assert read_only.requests[("POST", "/api/order")] == 0
    assert read_only.requests[("PUT", "/api/auth")] >= 1


def poll_query(prometheus: Prometheus, expr: str, timeout: float = 15.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        result = prometheus.query(expr)
        if result or time.monotonic() >= deadline:
            assert result, f"no series for {expr!r} within {timeout}s"
            return result
        time.sleep(0.25)


def fleet_rule(name: str) -> dict:
    (rule,) = [rule for group in read_yaml(FLEET_RULES)["groups"] for rule in group["rules"]
               if rule.get("alert") == name]
    return rule


# --- the shipped examples --------------------------------------------------------------------

SHIPPED_CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(FLEET, "prometheus*.yml")))
TARGET_FILES = sorted(glob.glob(os.path.join(FLEET, "targets", "*.json"))
                      + glob.glob(os.path.join(FLEET, "targets", "*.yml"))
                      + glob.glob(os.path.join(FLEET, "targets", "*.yaml")))


def test_the_fleet_examples_are_all_there():
    assert SHIPPED_CONFIGS == ["prometheus-shard.yml", "prometheus-sharded.yml", "prometheus.yml"]
    assert [os.path.basename(p) for p in TARGET_FILES] == ["students.json"]
    assert os.path.exists(MODULES)


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_promtool_check_config_accepts_the_fleet_config(name, tmp_path):
    """Not --syntax-only: promtool also reads and validates the file_sd files it names."""
    out = subprocess.run([binary("promtool"), "check", "config", name], cwd=FLEET,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    assert "FAILED" not in out.stdout + out.stderr
    config = read_yaml(os.path.join(FLEET, name))
    for job in config["scrape_configs"]:
        if job.get("metrics_path") != "/probe":
            continue
        # the journey's budget is the scrape timeout less 0.5 s: it must be under the interval
        timeout, interval = (parse_duration(job[key]) for key in ("scrape_timeout", "scrape_interval"))
        assert 0.5 < timeout < interval, job["job_name"]
        assert [f for sd in job["file_sd_configs"] for f in sd["files"]] == ["targets/*.json"]
        assert set(job["params"]["module"]) <= set(_loaded_modules(tmp_path).modules)


def test_the_example_fleet_alerts_fire_for_the_failing_service_only(tmp_path):
    out = subprocess.run([binary("promtool"), "check", "rules", FLEET_RULES],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SUCCESS: 2 rules found" in out.stdout, out.stdout + out.stderr
    def series(name, instance, values):
        return {
            "series": f'{name}{{job="pizza-fleet", instance="{instance}", module="default"}}',
            "values": values}

    def labels(instance):
        return {"job": "pizza-fleet", "instance": instance, "module": "default",
                "severity": "warning"}


    unit = {
        "rule_files": [FLEET_RULES],
        "evaluation_interval": "30s",
        "tests": [{
            "interval": "30s",
            "input_series": [
                # fails from the 3rd scrape on; one failure among good journeys; refused (up 0)
                series("pizza_probe_success", "https://broken.click", "1 1 0x30"),
                series("pizza_probe_success", "https://blip.click", "1x9 0 1x30"),  # 0 at 5m
                series("up", "https://broken.click", "1x32"),
                series("up", "https://blip.click", "1x32"),
                series("up", "https://refused.click", "0x32"),
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "PizzaFleetServiceFailing", "exp_alerts": []},
                {"eval_time": "8m", "alertname": "PizzaFleetServiceFailing", "exp_alerts": [
                    {"exp_labels": labels("https://broken.click"), "exp_annotations": {
                        "summary": "Synthetic orders fail on https://broken.click",
                        "description": "Only 0% of the synthetic order journeys on "
                                       "https://broken.click succeeded in the last 5 minutes. "
                                       "pizza_probe_failure_info names the step and the reason; "
                                       "/probe?target=https://broken.click&debug=true shows a "
                                       "journey."}}]},
                {"eval_time": "8m", "alertname": "PizzaFleetTargetNotProbed", "exp_alerts": [
                    {"exp_labels": labels("https://refused.click"), "exp_annotations": {
                        "summary": "https://refused.click is not being probed",
                        "description": fleet_rule("PizzaFleetTargetNotProbed")["annotations"][
                            "description"].replace("{{ $labels.instance }}",
                                                   "https://refused.click")}}]},
            ],
        }],
    }
    (tmp_path / "unit.yml").write_text(yaml.safe_dump(unit))
    out = subprocess.run([binary("promtool"), "test", "rules", "unit.yml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def _targets_in(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle) if path.endswith(".json") else yaml.safe_load(handle)


def shipped_targets() -> list[str]:
    return [t for path in TARGET_FILES for group in _targets_in(path) for t in group["targets"]]


def test_file_sd_lists_200_valid_distinct_targets(tmp_path):
    modules = _loaded_modules(tmp_path).modules
    for path in TARGET_FILES:
        groups = _targets_in(path)
        assert isinstance(groups, list) and groups
        for group in groups:
            assert set(group) <= {"targets", "labels"}
            assert all(isinstance(t, str) for t in group["targets"])
            for label, value in group.get("labels", {}).items():
                assert LABEL_NAME.fullmatch(label) and not label.startswith("__"), label
                assert isinstance(value, str), label
            assert group.get("labels", {}).get("module", "default") in modules
    targets = shipped_targets()
    assert len(targets) == 200 and len(set(targets)) == 200
    # Prometheus' instance label is the URL as written; keep it the exporter's normal form
    assert all(normalize_target(t) == t for t in targets)


def test_the_generator_writes_the_shipped_targets(tmp_path):
    out = tmp_path / "students.json"
    run = subprocess.run([sys.executable, os.path.join(FLEET, "generate_targets.py"),
                          "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert out.read_text() == open(os.path.join(FLEET, "targets", "students.json")).read(), \
        "targets/students.json is stale: run deploy/fleet/generate_targets.py"


def _copy_of_modules(tmp_path) -> str:
    """The shipped modules file where a user puts it, with the read-only password file that
    its password_file names (relative to the file's own directory)."""
    shutil.copy(MODULES, tmp_path / "modules.yml")
    (tmp_path / "secrets").mkdir(exist_ok=True)
    (tmp_path / "secrets" / "read-only-password").write_text("read-only-secret\n")
    return str(tmp_path / "modules.yml")


def _loaded_modules(tmp_path):
    """The shipped modules file, loaded with stand-in secrets."""
    return load_modules(_copy_of_modules(tmp_path), environ={"PIZZA_PROBE_PASSWORD": "stand-in"})


def test_the_example_modules_file_loads(tmp_path, monkeypatch):
    text = open(MODULES).read()
    assert not re.search(r"^\s*password\s*:", text, re.M)  # never inline
    monkeypatch.setenv("PIZZA_PROBE_PASSWORD", "from-the-environment")
    loaded = load_modules(_copy_of_modules(tmp_path))
    assert set(loaded.modules) == {"default", "read_only"}
    default, read_only = loaded.modules["default"], loaded.modules["read_only"]
    assert default.probe.password == "from-the-environment" and not default.probe.read_only
    assert read_only.probe.password == "read-only-secret" and read_only.probe.read_only
    assert default.probe.factory_url == "https://pizza-factory.cs329.click"
    # min_interval a little under the scrape interval: a fresh journey each scrape, yet two
    # Prometheus replicas share it
    interval = parse_duration(fleet_job(read_yaml(FLEET_PROMETHEUS))["scrape_interval"])
    for module in loaded.modules.values():
        assert interval * 0.5 <= module.min_interval < interval, module.name
    for pattern in loaded.patterns:
        assert ".*" not in pattern.pattern and ".+" not in pattern.pattern, pattern.pattern
    monkeypatch.delenv("PIZZA_PROBE_PASSWORD")
    with pytest.raises(Exception, match="password_env: the environment variable it names is not set"):
        load_modules(_copy_of_modules(tmp_path))


@pytest.mark.parametrize("target", [
    "https://pizza-service.evil.example/x.click",   # .* would cross the "/"
    "https://pizza-service.evil.example/.click",
    "https://pizza-service.a.b.click",              # two labels
    "https://pizza-service.x.click.evil.example",
    "https://pizza-service.student001.click:8443",  # another port
    "http://pizza-service.student001.click",        # not https
    "https://pizza-service.student001.click/api/auth",
    "https://pizza-service..click",
    "https://evil.example#https://pizza-service.a.click",
    "https://pizza-service.a.click@evil.example",
])
def test_the_example_allow_list_refuses_lookalikes(tmp_path, monkeypatch, target):
    monkeypatch.setenv("PIZZA_PROBE_PASSWORD", "x")
    journeys = []
    service = ProbeService(ModulesSource(_copy_of_modules(tmp_path), ProbeConfig()),
                           run=lambda *a, **k: journeys.append(a))
    with pytest.raises(ProbeRefused) as refused:
        service.probe(target)
    assert refused.value.status == 400 and journeys == []


def test_the_example_allow_list_admits_every_shipped_target(tmp_path, monkeypatch):
    monkeypatch.setenv("PIZZA_PROBE_PASSWORD", "x")
    service = ProbeService(ModulesSource(_copy_of_modules(tmp_path), ProbeConfig()))
    targets = shipped_targets()
    for target in targets + ["https://pizza-service.example.com",
                             "HTTPS://Pizza-Service.Student001.click/"]:
        url, module = service.resolve(target, "default")
        assert module.name == "default" and url == target.lower().rstrip("/")
    assert service.resolve(targets[0], "read_only")[1].probe.read_only


# --- hashmod sharding: each target in exactly one shard, sent to its own exporter ------------

def discover(runs: dict[str, tuple[str, str]]) -> dict[str, list[dict]]:
    """``promtool check service-discovery CONFIG JOB`` for each name: the job's targets after
    relabeling (a dropped one has no labels). Run side by side: each waits out its --timeout."""
    procs = {name: subprocess.Popen([binary("promtool"), "check", "service-discovery",
                                     "--timeout=3s", config, job],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (config, job) in runs.items()}
    found = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"service discovery of {name} failed: {err[-1000:]}"
        found[name] = [t["labels"] for t in json.loads(out) if t["labels"]]
    return found


def assert_partition(kept: dict[str, list[dict]], exporters: dict[str, str]) -> None:
    targets = shipped_targets()
    shards = {job: sorted(labels["__param_target"] for labels in found)
              for job, found in kept.items()}
    every = sorted(t for shard in shards.values() for t in shard)
    assert every == sorted(targets), "each target must be kept by exactly one shard"
    for job, found in kept.items():
        assert len(found) >= 200 // len(kept) // 2, f"{job} keeps only {len(found)}"
        for labels in found:
            assert labels["__address__"] == exporters[job]
            assert labels["instance"] == labels["__param_target"]
            assert labels["__metrics_path__"] == "/probe" and labels["job"] == "pizza-fleet"
            assert labels["__param_module"] == "default"


def test_one_prometheus_three_jobs_split_the_targets_between_three_exporters():
    path = os.path.join(FLEET, "prometheus-sharded.yml")
    jobs = [f"pizza-fleet-{n}" for n in range(3)]
    assert {j["job_name"] for j in read_yaml(path)["scrape_configs"]} >= set(jobs)
    kept = discover({job: (path, job) for job in jobs})
    assert_partition(kept, {f"pizza-fleet-{n}": f"pizza-probe-{n}:9816" for n in range(3)})


def test_three_prometheus_shards_split_the_targets_between_their_exporters(tmp_path):
    """prometheus-shard.yml is shard 0; the others are made as its comments say."""
    shutil.copytree(os.path.join(FLEET, "targets"), tmp_path / "targets")
    shutil.copy(FLEET_RULES, tmp_path)
    text = open(os.path.join(FLEET, "prometheus-shard.yml")).read()
    marked = [line for line in text.splitlines() if re.match(r"\s*[^#\s].*# SHARD", line)]
    assert len(marked) == 4, marked  # as its header says
    paths = {}
    for n in range(3):
        shard = text.replace('regex: "0"', f'regex: "{n}"').replace(
            "pizza-probe-0:", f"pizza-probe-{n}:").replace('shard: "0"', f'shard: "{n}"')
        paths[n] = tmp_path / f"prometheus-shard-{n}.yml"
        paths[n].write_text(shard)
    for n, path in paths.items():
        assert read_yaml(str(path))["global"]["external_labels"] == {"shard": str(n)}
    kept = discover({f"shard-{n}": (str(path), "pizza-fleet") for n, path in paths.items()})
    assert_partition(kept, {f"shard-{n}": f"pizza-probe-{n}:9816" for n in range(3)})
