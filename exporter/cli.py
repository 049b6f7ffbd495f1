"""The ``pizza-probe`` command line: once, serve, sidecar, simulate, demo and healthcheck."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource
from prometheus_client import CollectorRegistry

from . import __version__
from .config import (
    PUBLIC_FACTORY_URL,
    ConfigError,
    ProbeConfig,
    parse_duration,
    parse_http_url,
    parse_listen_address,
    read_secret_file,
)
from .logs import setup_logging
from .memory import release_free_memory
from .modules import ModulesSource, normalize_target
from .recovery import parse_allow_entry
from .runtime import start_exporter, wait_for
from .simchoices import CHAOS_MODES, FRANCHISE_SHAPES, LINK_FORMS, LINK_KEY_NAMES
from .transport import check_ca_file, check_environment

# Each command imports what only it runs (the simulator, the demo, the sidecar, the report),
# so that `serve` loads none of them: a smaller resident set for the long-running command.
if TYPE_CHECKING:
    from .records import IncidentStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parsed(click.ParamType):
    """A click type backed by one of our parsers; errors become one-line usage errors."""

    def __init__(self, name: str, parser) -> None:
        self.name = name
        self.parser = parser

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parser(value)
        except ConfigError as exc:
            self.fail(str(exc).split(": ", 1)[-1], param, ctx)


DURATION = _Parsed("duration", parse_duration)
DURATION_OR_ZERO = _Parsed("duration", lambda text: parse_duration(text, allow_zero=True))
HTTP_URL = _Parsed("url", parse_http_url)
OPTIONAL_HTTP_URL = _Parsed("url", lambda text: parse_http_url(text) if text.strip() else "")
LISTEN = _Parsed("host:port", parse_listen_address)
CA_FILE = _Parsed("path", check_ca_file)


def probe_options(command):
    """The options every command shares: what to probe and how."""
    options = [
        click.option("--service-url", envvar="PIZZA_SERVICE_URL", type=HTTP_URL,
                     default="http://localhost:3000", show_default=True, show_envvar=True,
                     help="Base URL of the JWT Pizza service."),
        click.option("--factory-url", envvar="PIZZA_FACTORY_URL", type=HTTP_URL, default=None,
                     show_envvar=True,
                     help="Base URL of the pizza factory (JWT verification) [default: the "
                          "factory the service names at GET /api/docs, else "
                          f"{PUBLIC_FACTORY_URL}]. A factory the service names is not added to "
                          "the recovery allow-list: name it here or with --allow-host."),
        click.option("--ca-file", envvar="PIZZA_PROBE_CA_FILE", type=CA_FILE, default=None,
                     show_envvar=True, metavar="PATH",
                     help="Trust only the CA certificates in this PEM file for HTTPS (the "
                          "service, the factory, the recovery link, the hand-off) [default: "
                          "REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE if set, else the "
                          "bundle requests ships]. HTTPS_PROXY, HTTP_PROXY and NO_PROXY are "
                          "honoured (never for loopback); a .netrc never is."),
        click.option("--email", envvar="PIZZA_PROBE_EMAIL", default="d@jwt.com",
                     show_default=True, show_envvar=True, help="The probe user's email."),
        click.option("--password", envvar="PIZZA_PROBE_PASSWORD", default=None, show_envvar=True,
                     help="The probe user's password [default: diner]; never empty (the service "
                          "lets an empty password log in as anyone). Prefer the environment "
                          "variable or --password-file: flags show in the process list."),
        click.option("--password-file", envvar="PIZZA_PROBE_PASSWORD_FILE", default=None,
                     show_envvar=True, metavar="PATH",
                     help="Read the password from the first line of this file (a regular file "
                          "of at most 4 KiB)."),
        click.option("--timeout", envvar="PIZZA_PROBE_TIMEOUT", type=DURATION, default="10s",
                     show_default=True, show_envvar=True,
                     help="Timeout of each step but the order (15, 0.5, 15s, 1m, 500ms; at most 1d)."),
        click.option("--order-timeout", envvar="PIZZA_PROBE_ORDER_TIMEOUT", type=DURATION,
                     default="45s", show_default=True, show_envvar=True,
                     help="Timeout of the order step; outlasts the factory's 32 s throttle so "
                          "its chaos link is seen (at most 1d)."),
        click.option("--slow-threshold", envvar="PIZZA_PROBE_SLOW_THRESHOLD", type=DURATION,
                     default="10s", show_default=True, show_envvar=True,
                     help="An order carrying a chaos link that took this long fails as 'slow'."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def logging_options(command):
    command = click.option("--log.format", "log_format", type=click.Choice(["logfmt", "json"]),
                           default="logfmt", show_default=True, help="Log line format.")(command)
    command = click.option("--log.level", "log_level",
                           type=click.Choice(["debug", "info", "warning", "error"]),
                           default="info", show_default=True, help="Least severe level logged.")(command)
    return command


def parse_allow_host(text: str) -> str:
    """``--allow-host``: a bare HOST or HOST:PORT, nothing else (``parse_allow_entry``)."""
    parse_allow_entry(text)
    return text


def recovery_options(command):
    """Options of the recovery action, shared by ``sidecar`` and ``once --recover``."""
    options = [
        click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST[:PORT]",
                     type=_Parsed("host", parse_allow_host),
                     envvar="PIZZA_RECOVERY_ALLOW_HOSTS", show_envvar=True,
                     help="Also allow recovery links to this host: a bare HOST or HOST:PORT, "
                          "not a URL (repeatable). Always allowed: "
                          "pizza-factory.cs329.click, cs329.cs.byu.edu and the --factory-url host."),
        click.option("--incident-dir", envvar="PIZZA_RECOVERY_INCIDENT_DIR", show_envvar=True,
                     metavar="DIR", help="Write each incident here as JSON and a postmortem draft."),
        click.option("--dry-run", is_flag=True, envvar="PIZZA_RECOVERY_DRY_RUN", show_envvar=True,
                     help="Decide and record, but never call a recovery link."),
        click.option("--kill-switch-file", envvar="PIZZA_RECOVERY_KILL_SWITCH_FILE",
                     show_envvar=True, metavar="PATH",
                     help="While this file exists, no recovery link is called."),
        click.option("--link-timeout", type=DURATION, default="5s", show_default=True,
                     envvar="PIZZA_RECOVERY_LINK_TIMEOUT", show_envvar=True,
                     help="Timeout of the recovery link call."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _incident_store(incident_dir: str | None) -> IncidentStore:
    from .records import IncidentStore

    try:
        store = IncidentStore(incident_dir)
    except OSError as exc:
        raise ConfigError(f"incident-dir: cannot create {incident_dir!r}: "
                          f"{exc.strerror or type(exc).__name__}") from None
    try:
        store.check_writable()  # a read-only directory is an error now, not a lost record later
    except OSError as exc:
        raise ConfigError(f"incident-dir: cannot write in {incident_dir!r}: "
                          f"{exc.strerror or type(exc).__name__}") from None
    return store


def listen_option(default: str, envvar: str, serves: str):
    return click.option("--listen", "--web.listen-address", "listen", envvar=envvar, type=LISTEN,
                        default=default, show_default=True, show_envvar=True,
                        help=f"Address for {serves}.")


EMPTY_PASSWORD = ("password: must not be empty (the JWT Pizza service lets an empty password "
                  "log in as anyone)")


def build_config(service_url, factory_url, email, password, password_file, timeout,
                 order_timeout, slow_threshold, ca_file=None, **_ignored) -> ProbeConfig:
    if password is None and os.environ.get("PIZZA_PROBE_PASSWORD") == "":
        # click reads an empty variable as unset, which would mean the default password
        raise ConfigError(EMPTY_PASSWORD.replace("password:", "PIZZA_PROBE_PASSWORD:", 1))
    if password == "":
        raise ConfigError(EMPTY_PASSWORD)
    if password is not None and password_file is not None:
        raise ConfigError("give either --password or --password-file, not both")
    if password_file is not None:
        password = read_secret_file(password_file)
    if not email or not email.strip():
        raise ConfigError("email: must not be empty")
    if ca_file is None:
        check_environment()
    return ProbeConfig(
        service_url=service_url,
        factory_url=factory_url,
        ca_file=ca_file,
        email=email.strip(),
        password="diner" if password is None else password,
        timeout=timeout,
        order_timeout=order_timeout,
        slow_threshold=slow_threshold,
    )


def _config_from(kwargs: dict) -> ProbeConfig:
    names = ("service_url", "factory_url", "email", "password", "password_file", "timeout",
             "order_timeout", "slow_threshold", "ca_file")
    return build_config(**{name: kwargs.pop(name) for name in names})


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             invoke_without_command=True, subcommand_metavar="COMMAND [ARGS]...")
@click.version_option(__version__, "--version", prog_name="pizza-probe")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """A Prometheus exporter and synthetic prober for JWT Pizza.

    It places a real synthetic order (login, menu, franchise, order, JWT verification, logout)
    and judges it strictly: a failed order, a forged pizza JWT or an answer carrying the
    factory's chaos link all count as failures.

    \b
    Examples:
      pizza-probe demo                   # everything, on the built-in simulator
      pizza-probe once --service-url http://localhost:3000
      pizza-probe serve --interval 15s --listen :9816
      pizza-probe serve --config.file modules.yml   # /probe?target=URL&module=NAME
      pizza-probe sidecar --exporter-url http://127.0.0.1:9816 --incident-dir incidents
    """
    if ctx.invoked_subcommand is None:
        # No command: the help on stderr and exit 2, as click groups do since click 8.2 (a
        # missing command is bad usage, so `pizza-probe $CMD` with an empty variable fails in a
        # script), without our "error:" line around it; the same with click 8.1.
        click.echo(ctx.get_help(), err=True)
        ctx.exit(EXIT_USAGE)


@cli.command()
@probe_options
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document on stdout (with --recover, the recovery inside it); "
                   "human text goes to stderr.")
@click.option("--recover", is_flag=True,
              help="If the journey failed with a chaos link, call the link as the sidecar does "
                   "(allow-list, dry run, kill switch) and verify with a fresh order.")
@recovery_options
def once(as_json: bool, recover: bool, allow_hosts, incident_dir, dry_run, kill_switch_file,
         link_timeout, **kwargs) -> int:
    """Run one journey and print each step.

    Exit status: 0 if the journey succeeded (with --recover: or the shop was healed and a fresh
    order verified it), 1 if it failed, 2 on bad usage or configuration.
    """
    from .handoff import ProbeReport
    from .journey import run_journey
    from .recovery import LinkPolicy
    from .report import recovery_json, render_json, render_recovery, render_text
    from .sidecar import RecoveryMetrics, Sidecar, SidecarOptions

    config = _config_from(kwargs)
    store = _incident_store(incident_dir)  # a bad directory is a usage error, --recover or not
    policy = LinkPolicy.default(config.factory_url, allow_hosts)
    result = run_journey(config)
    if not as_json:
        click.echo(render_text(result, config.service_url))
    if result.success or not recover:
        if as_json:
            click.echo(render_json(result, config.service_url,
                                   **({"recovery": None} if recover else {})))
        return EXIT_OK if result.success else EXIT_FAILED
    setup_logging("error", secrets=(config.password,))  # the summary below says what happened
    sidecar = Sidecar(
        config, policy,
        SidecarOptions(cooldown=0, dry_run=dry_run, kill_switch_file=kill_switch_file,
                       link_timeout=link_timeout),
        RecoveryMetrics(CollectorRegistry()), store,
    )
    sidecar.step(("report", ProbeReport.from_result(result)))
    current, closed = sidecar.snapshot()
    incident = current or closed[-1]
    click.echo(render_recovery(incident, incident_dir, store.path(incident)), err=as_json)
    if as_json:
        click.echo(render_json(result, config.service_url,
                               recovery=recovery_json(incident, store.path(incident))))
    return EXIT_OK if incident.status == "resolved" else EXIT_FAILED


_TARGET_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def parse_target(text: str) -> tuple[str, str]:
    """``NAME=URL`` of ``serve --target``: a name for the ``target`` label, and the service URL."""
    name, sep, url = text.partition("=")
    name = name.strip()
    if not sep or not _TARGET_NAME.fullmatch(name):
        raise ConfigError("target: use NAME=URL, NAME being 1-64 letters, digits, '_', '.', "
                          "':' or '-' (for example prod=https://pizza-service.example.com)")
    return name, normalize_target(url.strip(), name="target")


@cli.command()
@probe_options
@click.option("--interval", envvar="PIZZA_PROBE_INTERVAL", type=DURATION, default="15s",
              show_default=True, show_envvar=True,
              help="Time between journey starts; a journey that outlasts it delays the next.")
@listen_option(":9816", "PIZZA_PROBE_LISTEN",
               "/metrics, /probe, /-/reload, /healthz, / (the status page) and /api/status")
@click.option("--handoff-token", envvar="PIZZA_PROBE_HANDOFF_TOKEN", show_envvar=True,
              help="Shared with the sidecar: it reads journeys and their chaos links from "
                   "/recovery/latest with this token. Without one, only loopback clients may.")
@click.option("--target", "targets", multiple=True, metavar="NAME=URL",
              type=_Parsed("NAME=URL", parse_target), envvar="PIZZA_PROBE_TARGETS",
              show_envvar=True,
              help="Probe this service every --interval (repeatable; the variable takes a "
                   "space-separated list). Its metrics carry target=NAME. Replaces --service-url.")
@click.option("--config.file", "config_file", envvar="PIZZA_PROBE_CONFIG_FILE", show_envvar=True,
              metavar="PATH",
              help="Modules file (YAML) for /probe: modules, targets, allowed_target_patterns. "
                   "Reloaded on SIGHUP and POST /-/reload. With it and without --service-url or "
                   "--target, no journey is scheduled: Prometheus drives /probe.")
@click.option("--module", "module", envvar="PIZZA_PROBE_MODULE", default="default",
              show_default=True, show_envvar=True,
              help="The module of the scheduled journeys. Without --config.file there is one, "
                   "'default', made of the flags above; with it, the file's modules.")
@click.option("--probe.max-concurrent-journeys", "max_concurrent", type=click.IntRange(min=1),
              default=32, show_default=True, envvar="PIZZA_PROBE_MAX_CONCURRENT_JOURNEYS",
              show_envvar=True,
              help="Most /probe journeys at once; past it /probe answers 503.")
@click.option("--sidecar-url", envvar="PIZZA_PROBE_SIDECAR_URL", type=OPTIONAL_HTTP_URL,
              default="", show_envvar=True,
              help="The sidecar's address, e.g. http://127.0.0.1:9817: the status page on / "
                   "links to its page (the open incident, the last recovery).")
@logging_options
def serve(interval: float, listen: tuple[str, int], handoff_token: str | None, targets,
          config_file: str | None, module: str, max_concurrent: int, sidecar_url: str,
          log_level: str, log_format: str, **kwargs) -> int:
    """Run a journey every --interval, serve /metrics, and /probe for many targets.

    \b
    One target (the default): --service-url, metrics without a target label, no /probe.
    Static targets: --target NAME=URL (repeatable), metrics labelled target=NAME.
    Fleet mode (--target or --config.file): Prometheus scrapes /probe?target=URL&module=NAME,
    one journey (gauges in a registry of their own) per scrape, &debug=true for a readable log.
    /probe accepts only the scheduled targets, the modules file's targets and its
    allowed_target_patterns; a refused target gets 400 and no request. See docs/fleet.md.
    /probe also answers the blackbox exporter's probe_success and probe_duration_seconds.
    /metrics and /probe: OpenMetrics on Accept (with exemplars: journey_id, order_id), gzip,
    name[] filter. See docs/metrics.md.

    Stops cleanly within a second on SIGTERM or Ctrl-C, even in the middle of an order;
    SIGHUP reloads --config.file.
    """
    ctx = click.get_current_context()
    explicit = ctx.get_parameter_source("service_url") in (
        ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    if targets and explicit:
        raise ConfigError("give either --service-url or --target, not both")
    if len({name for name, _ in targets}) != len(targets):
        raise ConfigError("target: each NAME may be given once")
    config = _config_from(kwargs)
    log = setup_logging(log_level, log_format, secrets=(config.password, handoff_token))
    if targets:
        scheduled = list(targets)
    elif config_file and not explicit:
        scheduled = []
    else:
        scheduled = None
    modules = ModulesSource(config_file, config, required=[module] if scheduled != [] else [])
    stop, hangup = threading.Event(), threading.Event()
    _stop_on_signals(stop, hangup)  # before anything starts: an early SIGHUP must not kill it
    exporter = start_exporter(config, interval, listen, handoff_token=handoff_token or None,
                              log=log, modules=modules, targets=scheduled, module=module,
                              max_concurrent=max_concurrent, sidecar_url=sidecar_url or None)
    release_free_memory()  # what the imports and the start freed: ~1 MiB of RSS (issue 17)
    described = (config.service_url if scheduled is None else
                 ",".join(name for name, _ in scheduled) or "none (/probe only)")
    log.info("listening", extra={"fields": {
        "address": f"{listen[0]}:{exporter.server.port}", "targets": described,
        "module": module, "modules": ",".join(sorted(modules.current.modules)),
        "interval_seconds": interval, "version": __version__}})
    wait_for(stop, hangup, lambda: _reload(modules, log))
    log.info("stopping")
    exporter.stop()
    return EXIT_OK


def _reload(modules: ModulesSource, log) -> None:
    if modules.path is None:
        log.warning("SIGHUP ignored: there is no --config.file to reload")
        return
    try:
        modules.reload()
    except ConfigError:
        pass  # logged; the modules in force stay
    except Exception as exc:  # noqa: BLE001 (a bug of ours must not end serve: the modules stay)
        log.error("config reload crashed", extra={"fields": {"error": type(exc).__name__}})


@cli.command()
@probe_options
@click.option("--exporter-url", envvar="PIZZA_EXPORTER_URL", type=OPTIONAL_HTTP_URL,
              default="http://127.0.0.1:9816", show_default=True, show_envvar=True,
              help="The exporter whose failed journeys (and chaos links) trigger recovery. "
                   "Empty: act on Alertmanager's webhook alone.")
@click.option("--handoff-token", envvar="PIZZA_PROBE_HANDOFF_TOKEN", show_envvar=True,
              help="The exporter's --handoff-token, if it has one.")
@listen_option(":9817", "PIZZA_RECOVERY_LISTEN",
               "/alertmanager, /metrics, /healthz, / (the status page) and /api/status")
@click.option("--webhook-token", envvar="PIZZA_RECOVERY_WEBHOOK_TOKEN", show_envvar=True,
              help="Token Alertmanager must send (bearer, or as the basic-auth password). "
                   "Without one the webhook refuses every call.")
@click.option("--cooldown", type=DURATION, default="30s", show_default=True,
              envvar="PIZZA_RECOVERY_COOLDOWN", show_envvar=True,
              help="Least time between two recovery link calls.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True,
              envvar="PIZZA_RECOVERY_MAX_ATTEMPTS", show_envvar=True,
              help="Most link calls per incident; then a human must look.")
@click.option("--max-attempts-per-hour", type=click.IntRange(min=1), default=10,
              show_default=True, envvar="PIZZA_RECOVERY_MAX_ATTEMPTS_PER_HOUR", show_envvar=True,
              help="Most link calls in any hour, all incidents together.")
@recovery_options
@logging_options
def sidecar(exporter_url: str, handoff_token: str | None, listen: tuple[str, int],
            webhook_token: str | None, cooldown: float, max_attempts: int,
            max_attempts_per_hour: int, allow_hosts, incident_dir, dry_run, kill_switch_file,
            link_timeout: float, log_level: str, log_format: str, **kwargs) -> int:
    """Call the factory's recovery link when orders fail, safely, and prove the shop is back.

    Triggers: the exporter's failed journeys (read from its /recovery/latest) and
    Alertmanager's webhook (POST /alertmanager, alert PizzaSyntheticOrderFailing). Only links to
    allow-listed hosts are called, with a cooldown and attempt limits; an incident counts as
    resolved only when a fresh synthetic order succeeds.
    """
    from .sidecar import SidecarOptions
    from .sidecar_process import start_sidecar

    config = _config_from(kwargs)
    log = setup_logging(log_level, log_format,
                        secrets=(config.password, handoff_token, webhook_token))
    store = _incident_store(incident_dir)
    stop, hangup = threading.Event(), threading.Event()
    _stop_on_signals(stop, hangup)
    options = SidecarOptions(cooldown=cooldown, max_attempts=max_attempts,
                             max_attempts_per_hour=max_attempts_per_hour,
                             link_timeout=link_timeout, dry_run=dry_run,
                             kill_switch_file=kill_switch_file)
    process = start_sidecar(config, options, listen, stop, exporter_url=exporter_url or None,
                            allow_hosts=allow_hosts, store=store,
                            webhook_token=webhook_token or None,
                            handoff_token=handoff_token or None)
    log.info("listening", extra={"fields": {
        "address": f"{listen[0]}:{process.server.port}",
        "exporter_url": exporter_url or "none (webhook only)",
        "allow_hosts": ",".join(process.policy.describe()), "dry_run": dry_run,
        "webhook": "enabled" if webhook_token else "disabled (no --webhook-token)",
        "version": __version__}})
    wait_for(stop, hangup, lambda: log.warning("SIGHUP ignored: the sidecar has nothing to "
                                               "reload"))
    log.info("stopping")
    process.stop()
    return EXIT_OK


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in CHAOS_MODES]
    if not modes or unknown:
        raise ConfigError(f"chaos-modes: use a comma-separated list of {', '.join(CHAOS_MODES)}")
    return modes


CHAOS_MODE_LIST = _Parsed("modes", _modes)


@cli.command()
@click.option("--listen", type=LISTEN, default="127.0.0.1:3000", show_default=True,
              help="Address of the simulated JWT Pizza service.")
@click.option("--factory-listen", type=LISTEN, default="127.0.0.1:3001", show_default=True,
              help="Address of the simulated pizza factory.")
@click.option("--chaos", type=click.Choice(CHAOS_MODES), help="Start in this chaos mode.")
@click.option("--throttle-delay", type=DURATION, default="32s", show_default=True,
              help="How long the throttle chaos (and a full oven) holds an order.")
@click.option("--chaos-every", type=DURATION, help="Start the next chaos mode this often "
              "(when none is running).")
@click.option("--chaos-modes", type=CHAOS_MODE_LIST, default=",".join(CHAOS_MODES),
              show_default=True, help="The modes --chaos-every cycles through.")
@click.option("--link-key", type=click.Choice(LINK_KEY_NAMES), default="followLinkToEndChaos",
              show_default=True, help="The chaos link's key name, by fork age; either name of "
              "a pair picks the pair (reportSlowPizzaToFactoryUrl on a 200 goes with "
              "reportPizzaCreationErrorToPizzaFactoryUrl on a 500).")
@click.option("--link-form", type=click.Choice(LINK_FORMS), default="current", show_default=True,
              help="current: /api/support/KEY/report/CODE; legacy: /api/report?apiKey=&fixCode=.")
@click.option("--franchise-shape", type=click.Choice(FRANCHISE_SHAPES), default="new",
              show_default=True, help="new: {franchises, more}; old: a bare list (before May 2025).")
@click.option("--monkey", is_flag=True, help="Start with the service's own chaos monkey on.")
@click.option("--delay", type=DURATION_OR_ZERO, default="0s", show_default=True,
              help="Every answer of the service and the factory waits this long (a slow shop).")
@click.option("--vendor-key", envvar="PIZZA_SIM_VENDOR_KEY", show_envvar=True,
              help="The key that switches chaos [default: random, printed at start].")
@click.option("--extra-ports", type=click.IntRange(min=0, max=1000), default=0, show_default=True,
              help="Also serve the same shop on this many ports after --listen's, skipping "
                   "the factory's (a fleet of targets for /probe; --listen needs a fixed port).")
@click.option("--factory-tls", is_flag=True,
              help="Serve the factory over HTTPS with a certificate from a private CA made at "
                   "start (give its ca.pem to pizza-probe with --ca-file). Its links are "
                   "https://HOST/... with no port, as the real factory writes them, when it "
                   "listens on 443; on another port the link keeps the port.")
@click.option("--tls-dir", metavar="DIR", type=click.Path(file_okay=False),
              help="With --factory-tls: write ca.pem, factory.pem and factory-key.pem here "
                   "[default: a new temporary directory].")
@click.option("--factory-unreachable", is_flag=True,
              help="The service cannot reach its factory: every order answers 500 "
                   "'fetch failed', as the real service does then.")
@logging_options
def simulate(listen, factory_listen, chaos, throttle_delay, chaos_every, chaos_modes, link_key,
             link_form, franchise_shape, monkey, delay, vendor_key, extra_ports, factory_tls,
             tls_dir, factory_unreachable, log_level, log_format) -> int:
    """Serve a JWT Pizza service and its factory, with every chaos mode, on loopback.

    \b
    Seeded like the course's data: d@jwt.com/diner, a@jwt.com/admin, five menu items and one
    franchise with one store. Switch chaos at run time as a user does:
      curl -X PUT -H "Authorization: Bearer VENDOR_KEY" FACTORY/api/vendor/chaos/fail
    (fail, throttle, badjwt, or none to clear it), or the service's own monkey:
      PUT SERVICE/api/order/chaos/true with an admin token.
    Unlike the real factory, which schedules chaos for the next day and has neither 'none' nor
    GET /api/vendor/chaos, the simulator starts and clears chaos at once, for drills.
    """
    from .simulator import Simulator, SimulatorOptions

    if tls_dir:
        try:
            os.makedirs(tls_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"tls-dir: cannot create {tls_dir!r}: "
                              f"{exc.strerror or type(exc).__name__}") from None
    log = setup_logging(log_level, log_format)

    def on_event(name: str, fields: dict) -> None:
        log.info(name.replace("_", " "), extra={"fields": fields})

    simulator = Simulator(SimulatorOptions(
        throttle_delay=throttle_delay, link_key=link_key, link_form=link_form,
        franchise_shape=franchise_shape, vendor_key=vendor_key, chaos=chaos, monkey=monkey,
        delay=delay, factory_tls=factory_tls, tls_dir=tls_dir,
        factory_unreachable=factory_unreachable),
        on_event=on_event)
    ports = [port for port in range(listen[1] + 1, listen[1] + extra_ports + 2)
             if (listen[0], port) != factory_listen][:extra_ports]
    if extra_ports and (listen[1] == 0 or ports[-1] > 65535):
        raise ConfigError("extra-ports: --listen needs a fixed port with room for the extra "
                          "ports after it")
    also = [(listen[0], port) for port in ports]
    simulator.start(listen, factory_listen, also)
    stop = threading.Event()
    _stop_on_signals(stop)
    if chaos_every:
        simulator.start_schedule(chaos_every, list(chaos_modes))
    click.echo(f"JWT Pizza simulator\n  service     {simulator.service_url}\n"
               f"  factory     {simulator.factory_url}\n"
               + (f"  also on     {len(also)} ports, {also[0][1]}-{also[-1][1]} (the same shop)\n"
                  if also else "")
               + f"  vendor key  {simulator.factory.vendor_key}  (switches chaos)\n"
               + (f"  CA file     {simulator.ca_file}  (the factory's private CA)\n"
                  if simulator.ca_file else "")
               + f"  try: pizza-probe once --service-url {simulator.service_url}"
               + (f" --ca-file {simulator.ca_file}" if simulator.ca_file else ""))
    log.info("listening", extra={"fields": {"address": f"{listen[0]}:{simulator.servers[0].port}",
                                             "factory_address": f"{factory_listen[0]}:{simulator.servers[1].port}"}})
    wait_for(stop)
    simulator.stop()
    return EXIT_OK


@cli.command()
@click.option("--once", "once_", is_flag=True,
              help="Run one drill of each chaos mode, print a summary and exit: 0 only if each "
                   "was detected and recovered.")
@click.option("--interval", type=DURATION, default="1s", show_default=True,
              help="The probe interval.")
@click.option("--throttle-delay", type=DURATION, default="3s", show_default=True,
              help="The simulated factory's throttle delay (32 s in the real one).")
@click.option("--chaos-every", type=DURATION, default="20s", show_default=True,
              help="Without --once: break the factory this often.")
@click.option("--chaos-modes", type=CHAOS_MODE_LIST, default=",".join(CHAOS_MODES),
              show_default=True, help="The chaos modes to drill, in order.")
@click.option("--listen", type=LISTEN, default="127.0.0.1:9816", show_default=True,
              help="The exporter's address (/ status page, /metrics); a free port if taken.")
@click.option("--sidecar-listen", type=LISTEN, default="127.0.0.1:9817", show_default=True,
              help="The sidecar's address (/ status page, /metrics); a free port if taken.")
@click.option("--incident-dir", metavar="DIR", help="Write each incident's record here.")
@click.option("--drill-timeout", type=DURATION, default="30s", show_default=True,
              help="With --once: give up on a drill after this long.")
@click.option("--factory-tls", is_flag=True,
              help="Serve the simulated factory over HTTPS with a private CA the demo makes and "
                   "trusts (--ca-file), as a factory behind a corporate CA is.")
@click.option("--log.level", "log_level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="error", show_default=True,
              help="Log level of the components (the timeline is printed either way).")
def demo(once_, interval, throttle_delay, chaos_every, chaos_modes, listen, sidecar_listen,
         incident_dir, drill_timeout, factory_tls, log_level) -> int:
    """Run everything on the built-in simulator and watch the factory break and heal.

    Starts the simulator, the exporter and the self-healing sidecar in one process, breaks
    the factory (fail, throttle, badjwt) and prints a live timeline: chaos started, first
    failed probe, recovery link called, first good order, time to detect and to recover
    (defined in docs/timing.md). The first line names the status pages; if --listen or
    --sidecar-listen is taken, a free port is used and named. Ctrl-C prints a summary.
    """
    from .demo import Demo, DemoOptions

    setup_logging(log_level)
    store = _incident_store(incident_dir)  # a bad directory is a usage error, before anything starts
    app = Demo(DemoOptions(interval=interval, throttle_delay=throttle_delay,
                           chaos_every=chaos_every, modes=chaos_modes, listen=listen,
                           sidecar_listen=sidecar_listen, drill_timeout=drill_timeout,
                           factory_tls=factory_tls),
               sys.stdout, store)
    _stop_on_signals(app.stop_event)
    return EXIT_OK if app.run(once_) else EXIT_FAILED


@cli.command()
@click.argument("url", required=False, type=HTTP_URL)
@click.option("--timeout", type=DURATION, default="3s", show_default=True)
def healthcheck(url: str | None, timeout: float) -> int:
    """Exit 0 if URL answers 200, else 1: a container HEALTHCHECK that needs no curl.

    An unhealthy answer is one line on stderr, the URL and the cause, for example
    "unhealthy: http://127.0.0.1:9816/healthz: connection refused".

    Without URL: where the container's own pizza-probe command listens, read from its command
    line and environment (/healthz of serve, sidecar and demo, / of simulate); without such a
    process, http://127.0.0.1:9816/healthz.
    """
    from .healthcheck import HealthcheckError, check, own_url

    try:
        url = url or own_url(cli)
    except HealthcheckError as exc:
        click.echo(f"unhealthy: {exc}", err=True)
        return EXIT_FAILED
    if url is None:
        return EXIT_OK  # `once` serves nothing to check
    problem = check(url, timeout)  # "URL: cause", e.g. "...:9816/healthz: connection refused"
    if problem is not None:
        click.echo(f"unhealthy: {problem}", err=True)
        return EXIT_FAILED
    return EXIT_OK


def _stop_on_signals(stop: threading.Event, hangup: threading.Event | None = None) -> None:
    """SIGTERM and SIGINT set ``stop``; SIGHUP sets ``hangup``. The handlers only set a flag:
    the main thread acts on it (see runtime.wait_for)."""
    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    if hangup is not None:
        signal.signal(signal.SIGHUP, lambda signum, frame: hangup.set())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; bad usage or configuration is one line on stderr and exit 2."""
    try:
        code = cli.main(args=argv, prog_name="pizza-probe", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"pizza-probe: error: {exc.format_message()}{hint}", err=True)
        return EXIT_USAGE
    except ConfigError as exc:
        click.echo(f"pizza-probe: error: {exc}", err=True)
        return EXIT_USAGE
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("pizza-probe: interrupted", err=True)
        return 130
    return code if isinstance(code, int) else EXIT_OK


def run() -> None:
    """The console-script entry point."""
    sys.exit(main())
