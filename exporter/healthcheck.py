"""Where ``pizza-probe healthcheck`` (no URL) looks: the health URL of this container's command.

A container's HEALTHCHECK runs beside its main process, in the same PID and network namespaces.
So the check reads that process's command line and environment from ``/proc`` (PID 1, or a
child of PID 1 when an init such as ``docker run --init`` or a shell wrapper comes first),
parses them with the very click command they name (the same flags, environment variables and
defaults), and checks where that command listens:

    serve, sidecar, demo   http://HOST:PORT/healthz   (HOST:PORT from --listen or its variable)
    simulate               http://HOST:PORT/          (the simulated service)
    once                   nothing to check: it serves nothing

It writes nothing, so it works on a read-only root file system. Where no pizza-probe server can
be found (outside a container, say) it checks the exporter's default address, as it always did.
Nothing it reads (the environment holds secrets) is ever printed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import click

DEFAULT_URL = "http://127.0.0.1:9816/healthz"
PATHS = {"serve": "/healthz", "sidecar": "/healthz", "demo": "/healthz", "simulate": "/"}
SERVES_NOTHING = ("once",)
MAX_PROCESSES = 4096  # /proc entries looked at, at most


class HealthcheckError(Exception):
    """The container's command is known but its health URL is not; the message is one line."""


def pizza_args(argv: list[str]) -> list[str] | None:
    """The arguments after the pizza-probe program in a command line, or None if it is not one.

    ``pizza-probe serve ...``, ``python /venv/bin/pizza-probe serve ...`` (a console script as
    the kernel runs it), ``python -m exporter serve ...`` and ``docker-init -- pizza-probe ...``.
    """
    for index, arg in enumerate(argv):
        if os.path.basename(arg) == "pizza-probe":
            return argv[index + 1:]
        if arg == "-m" and argv[index + 1:index + 2] == ["exporter"]:
            return argv[index + 2:]
    return None


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def read_process(pid: int, proc: str = "/proc") -> tuple[list[str], dict[str, str] | None] | None:
    """(command line, environment or None if unreadable) of a process, or None if it is gone."""
    raw = _read(f"{proc}/{pid}/cmdline")
    if not raw:
        return None
    if raw.endswith(b"\0"):  # each argument ends in a NUL; an empty last one is still there
        raw = raw[:-1]
    argv = [part.decode(errors="replace") for part in raw.split(b"\0")]
    raw_env = _read(f"{proc}/{pid}/environ")
    environ = None
    if raw_env is not None:
        environ = {}
        for item in raw_env.split(b"\0"):
            key, sep, val = item.decode(errors="replace").partition("=")
            if sep and key:
                environ[key] = val
    return argv, environ


def _children_of_init(proc: str) -> list[int]:
    try:
        names = sorted(int(name) for name in os.listdir(proc) if name.isdigit())[:MAX_PROCESSES]
    except OSError:
        return []
    children = []
    for pid in names:
        stat = _read(f"{proc}/{pid}/stat")
        if stat is None:
            continue
        fields = stat.rpartition(b")")[2].split()  # after "pid (comm)": state, ppid, ...
        if len(fields) > 1 and fields[1] == b"1" and pid != 1:
            children.append(pid)
    return children


def find_command(proc: str = "/proc", own_pid: int | None = None
                 ) -> tuple[int, list[str], dict[str, str] | None] | None:
    """(pid, pizza-probe arguments, environment) of the container's pizza-probe, or None."""
    own_pid = os.getpid() if own_pid is None else own_pid
    for pid in [1, *_children_of_init(proc)]:
        if pid == own_pid:
            continue
        found = read_process(pid, proc)
        if found is None:
            continue
        args = pizza_args(found[0])
        if args and args[0] != "healthcheck":
            return pid, args, found[1]
    return None


@contextlib.contextmanager
def _environment(environ: dict[str, str]) -> Iterator[None]:
    """os.environ is what click reads option variables from; swap it for the other process's."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _connect_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def url_for(cli: click.Group, args: list[str], environ: dict[str, str]) -> str | None:
    """The health URL of ``pizza-probe ARGS`` run with ``environ``; None if it serves nothing.
    ``cli`` is the command line that reads ARGS (exporter.cli's group, passed in by it)."""
    name, rest = args[0], list(args[1:])
    command = cli.commands.get(name)
    if command is None:
        raise HealthcheckError(f"unknown pizza-probe command {name!r}")
    if name in SERVES_NOTHING:
        return None
    if name not in PATHS:
        raise HealthcheckError(f"pizza-probe {name} has no health URL")
    try:
        with _environment(environ):
            ctx = command.make_context(name, rest)
    except click.exceptions.Exit:
        raise HealthcheckError(f"pizza-probe {name} only printed its help") from None
    except click.ClickException as exc:
        raise HealthcheckError(f"cannot read pizza-probe {name}'s options: "
                               f"{exc.format_message().splitlines()[0]}") from None
    host, port = ctx.params["listen"]
    if port == 0:
        raise HealthcheckError(f"pizza-probe {name} listens on a port the system picked: "
                               "give healthcheck its URL")
    return f"http://{_connect_host(host)}:{port}{PATHS[name]}"


def shown_url(url: str) -> str:
    """``url`` as a message may show it: without a user or password, query values masked (a
    health URL's path is shown: it says what was checked)."""
    from . import urls

    try:
        parts = urls.parse(url)
    except urls.UrlError:
        return "(a URL that cannot be parsed)"
    host = f"[{parts.host}]" if ":" in parts.host else parts.host
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?***" if parts.query else "")


def check(url: str, timeout: float) -> str | None:
    """Why ``url`` is unhealthy, as ``URL: cause`` (the URL redacted, the cause short and
    decided by the exception's type, as the probe decides its step failures), or None if it
    answered 200. As every client here: no proxy for loopback, never a .netrc."""
    import requests

    from . import transport
    from .client import _transport_failure

    try:
        with transport.new_session() as session:
            status = session.get(url, timeout=timeout, allow_redirects=False,
                                 proxies=transport.proxies_for(url)).status_code
    except requests.RequestException as exc:
        return f"{shown_url(url)}: {_transport_failure(exc, timeout).detail}"
    if status != 200:
        return f"{shown_url(url)}: HTTP {status}"
    return None


def own_url(cli: click.Group, proc: str = "/proc") -> str | None:
    """The health URL of this container's pizza-probe command (see the module's docstring), as
    ``cli`` reads its command line."""
    found = find_command(proc)
    if found is None:
        return DEFAULT_URL
    _pid, args, environ = found
    return url_for(cli, args, dict(os.environ) if environ is None else environ)
