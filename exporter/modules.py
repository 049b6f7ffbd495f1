"""The modules file (``--config.file``): how to probe, per module, and which targets ``/probe``
may be pointed at. Reloadable: :class:`ModulesSource` swaps in a new file only if it is valid.

A module is a :class:`ProbeConfig` without its target, plus a minimum interval per target. The
file never holds a password: a module names an environment variable or a file to read it from.
Every error is one line naming the file and the key, and never quotes a value that may be secret.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import urls
from .config import (
    PLAIN_NETLOC,
    ConfigError,
    ProbeConfig,
    is_plain_ascii,
    parse_duration,
    parse_http_url,
    read_regular_file,
    read_secret_file,
)
from .logs import get_logger, redact_also
from .transport import check_ca_file

DEFAULT_MODULE = "default"
DEFAULT_MIN_INTERVAL = 10.0
MAX_TARGET_LENGTH = 512
MAX_FILE_BYTES = 16 << 20
_MODULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_MODULE_KEYS = ("factory_url", "email", "password_env", "password_file", "timeout",
                "order_timeout", "slow_threshold", "min_interval", "read_only", "ca_file")
_TOP_KEYS = ("modules", "targets", "allowed_target_patterns")


@dataclasses.dataclass(frozen=True)
class Module:
    """How to probe a target: a :class:`ProbeConfig` whose service URL is filled in per target."""

    name: str
    probe: ProbeConfig
    min_interval: float = DEFAULT_MIN_INTERVAL

    def config_for(self, target: str) -> ProbeConfig:
        return dataclasses.replace(self.probe, service_url=target)

    def describe(self) -> str:
        """One line of the module's settings; the password shows as ``<secret>``."""
        p = self.probe
        factory = p.factory_url or "(named by the service, else the public factory)"
        return (f"{self.name}: factory_url={factory} email={p.email} password=<secret> "
                f"timeout={p.timeout:g}s order_timeout={p.order_timeout:g}s "
                f"slow_threshold={p.slow_threshold:g}s min_interval={self.min_interval:g}s "
                f"read_only={'true' if p.read_only else 'false'} "
                f"ca_file={p.ca_file or '(environment)'}")


@dataclasses.dataclass(frozen=True)
class Modules:
    """One loaded modules file (or the flags alone): modules, named targets, target patterns."""

    modules: Mapping[str, Module]
    targets: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern, ...] = ()
    source: str | None = None

    def passwords(self) -> list[str]:
        """The modules' passwords: what no log line or answer may show."""
        return [module.probe.password for module in self.modules.values()]

    def allows(self, target: str, also: Iterable[str] = ()) -> bool:
        """Whether ``/probe`` may probe ``target`` (a normalized URL)."""
        if target in self.targets or target in also:
            return True
        return any(pattern.fullmatch(target) for pattern in self.patterns)


# What a target may look like, strictly: requests/urllib3 and urlsplit disagree on some URLs
# (urllib3 ends the host at a backslash, urlsplit does not; a resolver reads 2130706433 as
# 127.0.0.1), and an allow-list pattern is only as good as the host it is matched against. A
# host is a DNS name, a dotted-decimal IPv4 address or a bracketed IPv6 address, each in its
# one canonical spelling; a path is plain segments. Anything else is refused, not interpreted.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NUMERIC = re.compile(r"0x[0-9a-f]*|[0-9]+")  # a last label like this makes a host IPv4 (WHATWG)
_TARGET_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]*)*")


def _canonical_host(netloc: str, host: str) -> str | None:
    """The host as probed and compared, or None if it is not in its one canonical spelling."""
    if not PLAIN_NETLOC.fullmatch(netloc):  # nothing around a [v6], no empty port
        return None
    if ":" in host:
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            return None
        return None if address.ipv4_mapped else f"[{address.compressed}]"
    if len(host) > 253 or not _DNS_NAME.fullmatch(host):
        return None
    if _NUMERIC.fullmatch(host.rpartition(".")[2]):  # no 127.1, 0x7f.1, 0177.0.0.1
        try:
            return host if str(ipaddress.IPv4Address(host)) == host else None
        except ValueError:
            return None
    return host


def normalize_target(text: str, *, name: str = "target") -> str:
    """A target URL as it is compared and probed: checked by :func:`parse_http_url`, with the
    scheme and host in lower case, no trailing slash, and nothing in host or path that two URL
    parsers or resolvers could read differently. Parsed as requests sends it (exporter.urls)."""
    if len(text) > MAX_TARGET_LENGTH:
        raise ConfigError(f"{name}: longer than {MAX_TARGET_LENGTH} characters")
    if not is_plain_ascii(text.strip()):  # a parser may drop a tab silently
        raise ConfigError(f"{name}: must not contain spaces, control or non-ASCII characters")
    url = parse_http_url(text, name=name)
    parts = urls.parse(url)
    host = _canonical_host(parts.raw_netloc.lower(), parts.host)
    if host is None or parts.port == 0:
        raise ConfigError(f"{name}: the host must be a DNS name, a dotted-decimal IPv4 or a "
                          "bracketed IPv6 address, with a port from 1")
    path = parts.raw_path  # as written: urllib3 would quietly drop the dot segments
    segments = path.split("/")[1:]
    if not _TARGET_PATH.fullmatch(path) or {".", ".."} & set(segments) \
            or "" in segments[:-1]:
        raise ConfigError(f"{name}: the path may hold only segments of letters, digits and "
                          "- . _ ~ (no '.', '..' or empty segment)")
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return f"{parts.scheme}://{netloc}{path.rstrip('/')}"


def parse_modules(text: str, *, source: str = "config.file",
                  environ: Mapping[str, str] | None = None, base_dir: str = ".") -> Modules:
    """Parse a modules file's text; raise :class:`ConfigError` with a one-line message.
    A relative ``password_file`` is read from ``base_dir`` (the file's own directory)."""
    from . import strict_yaml  # PyYAML only when there is a file to read

    environ = os.environ if environ is None else environ
    try:
        data = strict_yaml.load(text)
    except strict_yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # PyYAML quotes the offending token (a tag, an alias): it may be a secret.
        problem = _QUOTED.sub("'...'", getattr(exc, "problem", None) or "cannot parse")
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    _require(isinstance(data, dict), source, "", "must be a mapping with the key 'modules'")
    _no_unknown_keys(data, _TOP_KEYS, source, "")
    modules_data = data.get("modules")
    modules_data = {} if modules_data is None else modules_data
    _require(isinstance(modules_data, dict), source, "modules", "must map names to modules")
    modules: dict[str, Module] = {}
    for name, body in modules_data.items():
        _require(isinstance(name, str) and _MODULE_NAME.fullmatch(name) is not None, source,
                 "modules", "module names are 1-64 letters, digits, '_', '.' or '-'")
        modules[name] = _module(name, body, source, environ, base_dir)
    targets = set()
    for index, item in enumerate(_list(data, "targets", source)):
        where = f"targets[{index}]"
        _require(isinstance(item, str), source, where, "must be a URL")
        targets.add(_wrap(normalize_target, source, where, item))
    patterns = []
    for index, item in enumerate(_list(data, "allowed_target_patterns", source)):
        where = f"allowed_target_patterns[{index}]"
        _require(isinstance(item, str) and item != "", source, where, "must be a regular expression")
        try:
            patterns.append(re.compile(item))
        except re.error as exc:
            raise ConfigError(f"{source}: {where}: not a valid regular expression: {exc.msg}") from None
        risk = _backtracking_risk(item)
        if risk:
            raise ConfigError(f"{source}: {where}: {risk}: it could take minutes to match "
                              "one target (write the repetition once, e.g. [a-z0-9-]+)")
    return Modules(modules, frozenset(targets), tuple(patterns), source)


def load_modules(path: str, *, environ: Mapping[str, str] | None = None) -> Modules:
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)  # no device, no FIFO, a bounded read
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(f"config.file {path}: larger than {MAX_FILE_BYTES >> 20} MiB; for "
                              "large fleets use allowed_target_patterns rather than listing "
                              "targets")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"config.file: cannot read {path!r}: {reason}") from None
    return parse_modules(text, source=f"config.file {path}", environ=environ,
                         base_dir=os.path.dirname(os.path.abspath(path)))


def _module(name: str, body: Any, source: str, environ: Mapping[str, str],
            base_dir: str) -> Module:
    where = f"modules.{name}"
    if body is None:
        body = {}
    _require(isinstance(body, dict), source, where, "must be a mapping of settings")
    if "password" in body:
        raise ConfigError(f"{source}: {where}.password: a password is never written in the file; "
                          "use password_env (an environment variable) or password_file")
    _no_unknown_keys(body, _MODULE_KEYS, source, where)
    settings: dict[str, Any] = {}
    for key in ("factory_url",):
        if key in body:
            settings[key] = _wrap(parse_http_url, source, f"{where}.{key}", _text(body[key]))
    if "email" in body:
        email = body["email"]
        _require(isinstance(email, str) and email.strip() != "", source, f"{where}.email",
                 "must be a non-empty string")
        settings["email"] = email.strip()
    for key in ("timeout", "order_timeout", "slow_threshold"):
        if key in body:
            settings[key] = _wrap(parse_duration, source, f"{where}.{key}", _text(body[key]))
    if "ca_file" in body:
        path = body["ca_file"]
        _require(isinstance(path, str) and path != "", source, f"{where}.ca_file", "must be a path")
        settings["ca_file"] = _wrap(check_ca_file, source, f"{where}.ca_file",
                                    os.path.join(base_dir, os.path.expanduser(path)))
    if "read_only" in body:
        _require(isinstance(body["read_only"], bool), source, f"{where}.read_only",
                 "must be true or false")
        settings["read_only"] = body["read_only"]
    settings["password"] = _password(body, source, where, environ, base_dir)
    min_interval = DEFAULT_MIN_INTERVAL
    if "min_interval" in body:
        min_interval = _wrap(lambda text, name: parse_duration(text, name=name, allow_zero=True),
                             source, f"{where}.min_interval", _text(body["min_interval"]))
    try:
        probe = ProbeConfig(**settings)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from None
    return Module(name, probe, min_interval)


def _password(body: dict, source: str, where: str, environ: Mapping[str, str],
              base_dir: str) -> str:
    if "password_env" in body and "password_file" in body:
        raise ConfigError(f"{source}: {where}: give password_env or password_file, not both")
    if "password_env" in body:
        var = body["password_env"]
        # Not echoed when it is no variable name: it may be the password, put in by mistake.
        _require(isinstance(var, str) and _ENV_NAME.fullmatch(var) is not None, source,
                 f"{where}.password_env", "must name an environment variable "
                 "(letters, digits and '_', not starting with a digit)")
        value = environ.get(var)
        if not value:
            # The name is not echoed: a password put here by mistake can look like a name.
            raise ConfigError(f"{source}: {where}.password_env: the environment variable it "
                              "names is not set or empty")
        return value
    if "password_file" in body:
        path = body["password_file"]
        _require(isinstance(path, str) and path != "", source, f"{where}.password_file",
                 "must be a path")
        path = os.path.join(base_dir, os.path.expanduser(path))
        return _wrap(lambda p, name: read_secret_file(p, name=name), source,
                     f"{where}.password_file", path)
    return ProbeConfig.password


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, bool) else str(value)


def _wrap(parser: Callable[..., Any], source: str, where: str, value: str):
    try:
        return parser(value, name=where)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _require(ok: bool, source: str, where: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: {where + ': ' if where else ''}{message}")


def _no_unknown_keys(data: dict, known: tuple[str, ...], source: str, where: str) -> None:
    for key in data:
        if key not in known:
            label = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"{source}: {label}: unknown key (known: {', '.join(known)})")


def _list(data: dict, key: str, source: str) -> list:
    value = data.get(key)
    value = [] if value is None else value
    _require(isinstance(value, list), source, key, "must be a list")
    return value


def _backtracking_risk(pattern: str) -> str | None:
    """Why ``pattern`` may backtrack for an exponential time on a 512-character target, or None.
    Python's ``re`` has no time limit, so the shapes that can are refused: a repetition inside a
    repetition (``(a+)+``), an alternation inside a repetition (``(a|ab)*``), a backreference."""
    import importlib

    c = importlib.import_module("re._constants")  # the parser re itself uses
    parser = importlib.import_module("re._parser")

    def matches(charset, char: str) -> bool | None:
        """Whether a one-character item matches ``char``; None when it cannot tell."""
        op, value = charset
        if op is c.LITERAL:
            return value == ord(char)
        if op is not c.IN:
            return None
        hit, negate = False, False
        for kind, item in value:
            if kind is c.NEGATE:
                negate = True
            elif kind is c.LITERAL:
                hit = hit or item == ord(char)
            elif kind is c.RANGE:
                hit = hit or item[0] <= ord(char) <= item[1]
            elif kind is c.CATEGORY and item in CATEGORIES:
                hit = hit or re.fullmatch(CATEGORIES[item], char) is not None
            else:
                return None
        return hit != negate

    def separated(items, index: int) -> bool:
        """An inner repetition of one character class, followed by a literal that class cannot
        match (``[a-z0-9-]+\\.``): each round of the outer repetition ends in one place only."""
        op, (low, high, sub) = items[index]
        if len(sub) != 1 or index + 1 >= len(items) or items[index + 1][0] is not c.LITERAL:
            return False
        return matches(sub[0], chr(items[index + 1][1])) is False

    CATEGORIES = {c.CATEGORY_DIGIT: r"\d", c.CATEGORY_WORD: r"\w", c.CATEGORY_SPACE: r"\s"}

    def walk(items, inside_repeat: bool) -> str | None:
        items = list(items)
        for index, (op, value) in enumerate(items):
            if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
                low, high, sub = value
                repeats = high == c.MAXREPEAT or high > 1
                if repeats and inside_repeat and op != c.POSSESSIVE_REPEAT \
                        and not separated(items, index):
                    return "a repetition inside a repetition"
                problem = walk(sub, inside_repeat or repeats)
            elif op is c.BRANCH:
                if inside_repeat:
                    return "an alternation inside a repetition"
                problem = next(filter(None, (walk(b, inside_repeat) for b in value[1])), None)
            elif op is c.SUBPATTERN:
                problem = walk(value[-1], inside_repeat)
            elif op in (c.ASSERT, c.ASSERT_NOT):
                problem = walk(value[1], inside_repeat)
            elif op in (c.GROUPREF, c.GROUPREF_EXISTS):
                return "a backreference"
            else:
                problem = None
            if problem:
                return problem
        return None

    def flat(items):
        for op, value in items:
            if op is c.SUBPATTERN:
                yield from flat(value[-1])
            else:
                yield op, value

    def chain(items) -> str | None:
        """Three unbounded repetitions in a row that nothing tells apart (``a*a*a*``,
        ``.*.*.*``): matching fails in polynomial time, minutes on a 512-character target."""
        length, last = 0, None
        for op, value in flat(items):
            if op in (c.MAX_REPEAT, c.MIN_REPEAT) and value[1] == c.MAXREPEAT:
                length += 1
                last = value[2][0] if len(value[2]) == 1 else None
                if length >= 3:
                    return "three repetitions in a row that can match the same text"
            elif op is c.LITERAL and length and last is not None \
                    and matches(last, chr(value)) is False:
                length = 0
        return None

    try:
        parsed = parser.parse(pattern)
        return walk(parsed, False) or chain(parsed)
    except Exception:  # noqa: BLE001 (re compiled it; a parser change here must not refuse it)
        return None


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


class ModulesSource:
    """The modules in force: without a file, ``default`` made of the probe flags; with one, the
    file's modules. ``reload`` swaps in the file's new text only if all of it is valid; the old
    modules stay otherwise."""

    def __init__(self, path: str | None, default: ProbeConfig, *,
                 environ: Mapping[str, str] | None = None, required: Iterable[str] = ()) -> None:
        self.path = path
        self.default = default
        self.environ = environ
        self.required = tuple(required)  # modules the scheduled journeys use: a file must keep them
        self.listeners: list[Callable[[bool], None]] = []  # told of each reload's outcome
        self._lock = threading.Lock()
        self._current = self._load()  # a broken file at start-up is a usage error
        self.last_success = time.time()

    def _load(self) -> Modules:
        if self.path is None:
            modules = Modules({DEFAULT_MODULE: Module(DEFAULT_MODULE, self.default)})
        else:  # the file's modules are all there are: no hidden one made of the flags
            modules = load_modules(self.path, environ=self.environ)
            if not modules.modules:
                raise ConfigError(f"config.file {self.path}: defines no module (modules:)")
        redact_also(modules.passwords())  # no log line shows a module's password
        for name in self.required:
            if name not in modules.modules:
                raise ConfigError(f"module: no module {name!r} for the scheduled journeys "
                                  f"(known: {', '.join(sorted(modules.modules))})")
        return modules

    @property
    def current(self) -> Modules:
        return self._current

    def reload(self) -> None:
        """Read the file again. If it is broken, log why, keep the old modules and raise
        :class:`ConfigError`."""
        log = get_logger()
        with self._lock:
            try:
                modules = self._load()
            except ConfigError as exc:
                log.error("config reload failed; keeping the modules in force",
                          extra={"fields": {"error": str(exc)}})
                self._tell(False)
                raise
            self._current = modules
            self.last_success = time.time()
            log.info("config reloaded", extra={"fields": {
                "file": self.path, "modules": ",".join(sorted(modules.modules))}})
            self._tell(True)

    def _tell(self, ok: bool) -> None:
        for listener in self.listeners:
            listener(ok)
