"""The ``pizza-probe`` command line: ``once`` and ``serve``."""

from __future__ import annotations

import functools
import random
import signal
import sys
import threading

import click
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from . import __version__
from .config import (
    ConfigError,
    ProbeConfig,
    parse_duration,
    parse_http_url,
    parse_listen_address,
    read_secret_file,
)
from .alertmanager import Deduper
from .handoff import ExporterFeed, LatestJourney, ProbeReport
from .incident import IncidentStore
from .journey import run_journey
from .logs import JourneyLogger, setup_logging
from .metrics import ProbeMetrics
from .recovery import LinkPolicy
from .report import render_json, render_recovery, render_text
from .scheduler import ProbeLoop
from .sidecar import RecoveryMetrics, Sidecar, SidecarOptions
from .sidecar_web import sidecar_server
from .web import History, exporter_server

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
HTTP_URL = _Parsed("url", parse_http_url)
LISTEN = _Parsed("host:port", parse_listen_address)


def probe_options(command):
    """The options every command shares: what to probe and how."""
    options = [
        click.option("--service-url", envvar="PIZZA_SERVICE_URL", type=HTTP_URL,
                     default="http://localhost:3000", show_default=True, show_envvar=True,
                     help="Base URL of the JWT Pizza service."),
        click.option("--factory-url", envvar="PIZZA_FACTORY_URL", type=HTTP_URL,
                     default="https://pizza-factory.cs329.click", show_default=True,
                     show_envvar=True, help="Base URL of the pizza factory (JWT verification)."),
        click.option("--email", envvar="PIZZA_PROBE_EMAIL", default="d@jwt.com",
                     show_default=True, show_envvar=True, help="The probe user's email."),
        click.option("--password", envvar="PIZZA_PROBE_PASSWORD", default=None, show_envvar=True,
                     help="The probe user's password [default: diner]. Prefer the environment "
                          "variable or --password-file: flags show in the process list."),
        click.option("--password-file", envvar="PIZZA_PROBE_PASSWORD_FILE", default=None,
                     show_envvar=True, metavar="PATH",
                     help="Read the password from the first line of this file."),
        click.option("--timeout", envvar="PIZZA_PROBE_TIMEOUT", type=DURATION, default="10s",
                     show_default=True, show_envvar=True,
                     help="Timeout of each step but the order (15, 0.5, 15s, 1m, 500ms)."),
        click.option("--order-timeout", envvar="PIZZA_PROBE_ORDER_TIMEOUT", type=DURATION,
                     default="45s", show_default=True, show_envvar=True,
                     help="Timeout of the order step; outlasts the factory's 32 s throttle so "
                          "its chaos link is seen."),
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


def recovery_options(command):
    """Options of the recovery action, shared by ``sidecar`` and ``once --recover``."""
    options = [
        click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST[:PORT]",
                     envvar="PIZZA_RECOVERY_ALLOW_HOSTS", show_envvar=True,
                     help="Also allow recovery links to this host (repeatable). Always allowed: "
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
    try:
        return IncidentStore(incident_dir)
    except OSError as exc:
        raise ConfigError(f"incident-dir: cannot create {incident_dir!r}: "
                          f"{exc.strerror or type(exc).__name__}") from None


def build_config(service_url, factory_url, email, password, password_file, timeout,
                 order_timeout, slow_threshold, **_ignored) -> ProbeConfig:
    if password is not None and password_file is not None:
        raise ConfigError("give either --password or --password-file, not both")
    if password_file is not None:
        password = read_secret_file(password_file)
    if not email or not email.strip():
        raise ConfigError("email: must not be empty")
    return ProbeConfig(
        service_url=service_url,
        factory_url=factory_url,
        email=email.strip(),
        password="diner" if password is None else password,
        timeout=timeout,
        order_timeout=order_timeout,
        slow_threshold=slow_threshold,
    )


def _config_from(kwargs: dict) -> ProbeConfig:
    names = ("service_url", "factory_url", "email", "password", "password_file", "timeout",
             "order_timeout", "slow_threshold")
    return build_config(**{name: kwargs.pop(name) for name in names})


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="pizza-probe")
def cli() -> None:
    """A Prometheus exporter and synthetic prober for JWT Pizza.

    It places a real synthetic order (login, menu, franchise, order, JWT verification, logout)
    and judges it strictly: a failed order, a forged pizza JWT or an answer carrying the
    factory's chaos link all count as failures.

    \b
    Examples:
      pizza-probe once --service-url http://localhost:3000
      pizza-probe serve --interval 15s --listen :9816
      pizza-probe sidecar --exporter-url http://127.0.0.1:9816 --incident-dir incidents
    """


@cli.command()
@probe_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
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
    config = _config_from(kwargs)
    store = _incident_store(incident_dir) if recover else None
    result = run_journey(config)
    render = render_json if as_json else render_text
    click.echo(render(result, config.service_url))
    if result.success or not recover:
        return EXIT_OK if result.success else EXIT_FAILED
    setup_logging("error")  # the recovery summary below says what happened
    sidecar = Sidecar(
        config, LinkPolicy.default(config.factory_url, allow_hosts),
        SidecarOptions(cooldown=0, dry_run=dry_run, kill_switch_file=kill_switch_file,
                       link_timeout=link_timeout),
        RecoveryMetrics(CollectorRegistry()), store,
    )
    sidecar.step(("report", ProbeReport.from_result(result)))
    current, closed = sidecar.snapshot()
    incident = current or closed[-1]
    click.echo(render_recovery(incident, incident_dir))
    return EXIT_OK if incident.status == "resolved" else EXIT_FAILED


@cli.command()
@probe_options
@click.option("--interval", envvar="PIZZA_PROBE_INTERVAL", type=DURATION, default="15s",
              show_default=True, show_envvar=True,
              help="Time between journey starts; a journey that outlasts it delays the next.")
@click.option("--listen", "--web.listen-address", "listen", envvar="PIZZA_PROBE_LISTEN",
              type=LISTEN, default=":9816", show_default=True, show_envvar=True,
              help="Address for /metrics, /healthz and /.")
@click.option("--handoff-token", envvar="PIZZA_PROBE_HANDOFF_TOKEN", show_envvar=True,
              help="Shared with the sidecar: it reads journeys and their chaos links from "
                   "/recovery/latest with this token. Without one, only loopback clients may.")
@logging_options
def serve(interval: float, listen: tuple[str, int], handoff_token: str | None, log_level: str,
          log_format: str, **kwargs) -> int:
    """Run a journey every --interval and serve /metrics.

    Stops cleanly within a second on SIGTERM or Ctrl-C, even in the middle of an order.
    """
    config = _config_from(kwargs)
    log = setup_logging(log_level, log_format)
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    metrics = ProbeMetrics(registry)
    history = History()
    latest = LatestJourney()
    loop = ProbeLoop(
        functools.partial(run_journey, config),
        interval,
        [metrics.record, history, latest, JourneyLogger(log)],
        rng=random.Random(),
    )
    server = exporter_server(*listen, registry, history, latest, handoff_token or None).start()
    log.info("listening", extra={"fields": {
        "address": f"{listen[0]}:{server.port}", "service_url": config.service_url,
        "interval_seconds": interval, "version": __version__}})
    stop = threading.Event()
    _stop_on_signals(stop)
    loop_thread = loop.start()
    stop.wait()
    log.info("stopping")
    loop.stop()
    server.stop()
    loop_thread.join(timeout=0.5)  # a journey mid-order is abandoned: its thread is a daemon
    return EXIT_OK


@cli.command()
@probe_options
@click.option("--exporter-url", envvar="PIZZA_EXPORTER_URL", type=HTTP_URL,
              default="http://127.0.0.1:9816", show_default=True, show_envvar=True,
              help="The exporter whose failed journeys (and chaos links) trigger recovery.")
@click.option("--handoff-token", envvar="PIZZA_PROBE_HANDOFF_TOKEN", show_envvar=True,
              help="The exporter's --handoff-token, if it has one.")
@click.option("--listen", "--web.listen-address", "listen", envvar="PIZZA_RECOVERY_LISTEN",
              type=LISTEN, default=":9817", show_default=True, show_envvar=True,
              help="Address for /alertmanager, /metrics, /healthz and /.")
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
    config = _config_from(kwargs)
    log = setup_logging(log_level, log_format)
    store = _incident_store(incident_dir)
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    policy = LinkPolicy.default(config.factory_url, allow_hosts)
    engine = Sidecar(
        config, policy,
        SidecarOptions(cooldown=cooldown, max_attempts=max_attempts,
                       max_attempts_per_hour=max_attempts_per_hour, link_timeout=link_timeout,
                       dry_run=dry_run, kill_switch_file=kill_switch_file),
        RecoveryMetrics(registry), store,
    )
    server = sidecar_server(*listen, registry, engine, webhook_token or None, Deduper()).start()
    stop = threading.Event()
    _stop_on_signals(stop)
    ExporterFeed(exporter_url, engine.submit_report, token=handoff_token or None, stop=stop).start()
    worker = engine.start(stop)
    log.info("listening", extra={"fields": {
        "address": f"{listen[0]}:{server.port}", "exporter_url": exporter_url,
        "allow_hosts": ",".join(policy.describe()), "dry_run": dry_run,
        "webhook": "enabled" if webhook_token else "disabled (no --webhook-token)",
        "version": __version__}})
    stop.wait()
    log.info("stopping")
    server.stop()
    worker.join(timeout=0.5)
    return EXIT_OK


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


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
