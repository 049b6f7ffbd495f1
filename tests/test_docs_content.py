"""What README.md and docs/ must say: a README that fits on a screen, the make test requirements,
terms defined before use, links that resolve, and every public name (metric, failure reason,
alert, flag, environment variable, command) documented."""

from __future__ import annotations

import glob
import os
import re

import click
import yaml

from exporter.cli import cli
from exporter.result import REASONS, STEPS

from conftest import http_get, poll

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(*parts: str) -> str:
    with open(os.path.join(REPO, *parts)) as handle:
        return handle.read()


def pages() -> dict[str, str]:
    """README.md and docs/*.md, by path relative to the repository."""
    paths = ["README.md", *sorted(os.path.relpath(p, REPO)
                                  for p in glob.glob(os.path.join(REPO, "docs", "*.md")))]
    return {path: read(path) for path in paths}


def all_docs() -> str:
    return "\n".join(pages().values())


def named(name: str, text: str) -> bool:
    """``name`` stands in ``text`` as a whole word (``--listen`` is not ``--listen-x``)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


# --- the README -----------------------------------------------------------------------------


def test_the_readme_fits_on_a_screen():
    lines = read("README.md").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_says_make_test_needs_root_and_apt_and_which_packages():
    makefile = read("Makefile").replace("\\\n", " ")
    packages = " ".join(re.findall(r"^TOOLS_PACKAGES\s*[:+]?=\s*(.+)$", makefile, re.M))
    assert packages.split(), "no TOOLS_PACKAGES in the Makefile"
    readme = read("README.md")
    section = readme.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    for word in ("root", "apt-get", "Debian"):
        assert word in section, f"the README's two commands do not say {word!r}"
    missing = [p for p in packages.split() if f"`{p}`" not in section]
    assert not missing, f"make test installs {missing}: name them in the README's two commands"


def test_journey_chaos_link_and_hand_off_are_defined_before_they_are_used():
    readme = read("README.md").lower()
    for term in ("journey", "chaos link", "hand-off"):
        first = re.search(rf"(?<![\w-]){re.escape(term)}", readme)
        assert first is not None, term
        assert readme[first.start() - 2:first.start()] == "**", \
            f"the README uses {term!r} before its definition (**{term}**)"


def test_the_readme_links_every_page_of_docs():
    readme = read("README.md")
    for page in ("metrics", "configuration", "fleet", "deploy", "runbook", "development",
                 "status-page", "timing", "journey", "sidecar"):
        assert f"](docs/{page}.md)" in readme, f"the README does not link docs/{page}.md"


def test_every_command_is_in_the_readmes_command_table():
    readme = read("README.md")
    for name in cli.commands:
        assert f"| `pizza-probe {name}" in readme, f"pizza-probe {name} is not in the command table"


# --- links ----------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    outside = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+)$", outside, re.M)}


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for path, text in pages().items():
        text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            file, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(os.path.join(REPO, resolved)):
                broken.append(f"{path}: {target} (no {resolved})")
            elif anchor and resolved.endswith(".md") and anchor not in anchors(read(resolved)):
                broken.append(f"{path}: {target} (no heading #{anchor} in {resolved})")
    assert not broken, "\n".join(broken)


def test_slugs_are_githubs():
    assert slug("`sidecar`: the self-healing sidecar") == "sidecar-the-self-healing-sidecar"
    assert slug("A service or factory behind a private CA") == "a-service-or-factory-behind-a-private-ca"
    assert slug("`/probe` or `serve --target`?") == "probe-or-serve---target"


# --- every public name, documented ------------------------------------------------------------


def test_every_failure_reason_and_step_is_in_the_metrics_reference():
    metrics = read("docs", "metrics.md")
    for reason in REASONS:
        assert f"| `{reason}` |" in metrics, f"reason {reason} is not in docs/metrics.md's table"
    for step in STEPS:
        assert f"`{step}`" in metrics, f"step {step} is not in docs/metrics.md"


def test_every_alert_is_in_the_metrics_reference_and_the_runbook():
    rules = yaml.safe_load(read("alerts", "pizza-probe.rules.yml"))
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    assert alerts
    for alert in alerts:
        assert named(alert, read("docs", "metrics.md")), f"{alert} is not in docs/metrics.md"
        assert f"## {alert}" in read("docs", "runbook.md"), f"{alert} has no runbook section"


def test_every_flag_and_environment_variable_is_documented():
    docs = all_docs()
    missing = []
    for name, command in cli.commands.items():
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            for flag in param.opts:
                if flag.startswith("--") and flag != "--help" and not named(flag, docs):
                    missing.append(f"pizza-probe {name} {flag}")
            envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
            missing += [f"pizza-probe {name}: {var}" for var in envvars if not named(var, docs)]
    assert not missing, "not in README.md or docs/ (docs/configuration.md): " + ", ".join(missing)


def metric_names_in_code() -> set[str]:
    """Every metric name the package spells out (a Counter's without its _total)."""
    names: set[str] = set()
    for path in glob.glob(os.path.join(REPO, "exporter", "*.py")):
        names |= set(re.findall(r"[\"']((?:pizza_probe|pizza_recovery|probe)_[a-z_]+)[\"']",
                                read(path)))
    return names


def exposed_names(text: str) -> set[str]:
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    return {n for n in names if not n.startswith(("process_", "python_"))
            and not (n.endswith("_created") and (n[:-8] + "_total" in names or n[:-8] in names))}


def test_every_metric_the_processes_expose_is_in_the_metrics_reference(simulator, processes,
                                                                        tmp_path):
    """What a real serve (scheduled targets and /probe) and a real sidecar expose, scraped."""
    modules = tmp_path / "modules.yml"
    modules.write_text(yaml.safe_dump({"modules": {"default": {
        "factory_url": simulator.factory_url, "min_interval": "0s"}},
        "targets": [simulator.service_url]}))
    serve = processes.start("serve", "--target", f"shop={simulator.service_url}",
                            "--config.file", str(modules), "--interval", "1s")
    sidecar = processes.start("sidecar", "--exporter-url", serve.url,
                              "--service-url", simulator.service_url)
    poll(lambda: 'pizza_probe_orders_total{result="success",target="shop"} 1' in serve.metrics(),
         timeout=20, what="a scheduled journey")
    status, probe = http_get(f"{serve.url}/probe?target={simulator.service_url}", timeout=20)
    assert status == 200, probe
    exposed = exposed_names(serve.metrics()) | exposed_names(probe) | exposed_names(sidecar.metrics())
    assert {"pizza_probe_orders_total", "pizza_probe_failure_info",
            "pizza_recovery_attempts_total"} <= exposed, exposed
    reference = read("docs", "metrics.md")
    missing = sorted(name for name in exposed if not named(name, reference))
    assert not missing, f"exposed but not in docs/metrics.md: {missing}"
    spelled = sorted(name for name in metric_names_in_code()
                     if not re.search(rf"(?<![\w-]){re.escape(name)}", reference))
    assert not spelled, f"named in exporter/ but not in docs/metrics.md: {spelled}"
