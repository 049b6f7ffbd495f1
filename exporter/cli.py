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
from .journey import run_journey
from .logs import JourneyLogger, get_logger, setup_logging
from .metrics import ProbeMetrics
from .report import render_json, render_text
from .scheduler import ProbeLoop
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
    """


@cli.command()
@probe_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def once(as_json: bool, **kwargs) -> int:
    """Run one journey and print each step.

    Exit status: 0 if the journey succeeded, 1 if it failed, 2 on bad usage or configuration.
    """
    config = _config_from(kwargs)
    result = run_journey(config)
    render = render_json if as_json else render_text
    click.echo(render(result, config.service_url))
    return EXIT_OK if result.success else EXIT_FAILED


@cli.command()
@probe_options
@click.option("--interval", envvar="PIZZA_PROBE_INTERVAL", type=DURATION, default="15s",
              show_default=True, show_envvar=True,
              help="Time between journey starts; a journey that outlasts it delays the next.")
@click.option("--listen", "--web.listen-address", "listen", envvar="PIZZA_PROBE_LISTEN",
              type=LISTEN, default=":9816", show_default=True, show_envvar=True,
              help="Address for /metrics, /healthz and /.")
@logging_options
def serve(interval: float, listen: tuple[str, int], log_level: str, log_format: str,
          **kwargs) -> int:
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
    loop = ProbeLoop(
        functools.partial(run_journey, config),
        interval,
        [metrics.record, history, JourneyLogger(log)],
        rng=random.Random(),
    )
    server = exporter_server(*listen, registry, history).start()
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
