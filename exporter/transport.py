"""How every HTTP client of pizza-probe trusts TLS and what it takes from the environment.

One place for the journey, verify, the recovery link and the hand-off, so they cannot differ:

- **TLS trust.** ``--ca-file`` (a module's ``ca_file``) if given: that file alone, as the
  blackbox exporter's ``tls_config.ca_file`` and curl's ``--cacert`` do. Otherwise the first of
  ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` (both read by ``requests`` itself) and
  ``SSL_CERT_FILE`` (read by OpenSSL and most other clients) that is set; otherwise the bundle
  ``requests`` ships (certifi). Verification is never turned off.
- **Proxies.** ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (either case) are
  honoured exactly as ``requests`` reads them, for each request's own URL.
- **Nothing else.** A ``.netrc`` never adds credentials: sessions do not trust the environment
  as a whole (``trust_env`` is off), only the settings above.
"""

from __future__ import annotations

import os
import ssl
from typing import Mapping

import requests
from requests.utils import get_environ_proxies

from .config import ConfigError

# Read in this order when no --ca-file is given.
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


def check_ca_file(path: str, *, name: str = "ca-file") -> str:
    """``path`` if it is a readable file of PEM certificates; else a one-line ConfigError."""
    if not path:
        raise ConfigError(f"{name}: empty path")
    if os.path.isdir(path):
        raise ConfigError(f"{name}: {path!r} is a directory; give a file of PEM certificates")
    try:
        ssl.create_default_context(cafile=path)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise ConfigError(f"{name}: {path!r} holds no PEM certificate") from None
        raise ConfigError(f"{name}: cannot read {path!r}: {exc.strerror or type(exc).__name__}") \
            from None
    return path


def ca_bundle(ca_file: str | None, environ: Mapping[str, str] | None = None) -> str | bool:
    """What ``requests`` is given as ``verify``: a CA file or directory, or True (certifi)."""
    if ca_file:
        return ca_file
    environ = os.environ if environ is None else environ
    for variable in CA_VARIABLES:
        value = environ.get(variable)
        if value:
            return value
    return True


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """A CA variable naming a file that does not exist is a configuration error, said at start
    rather than as a failed request at every journey."""
    environ = os.environ if environ is None else environ
    for variable in CA_VARIABLES:
        value = environ.get(variable)
        if value:
            if not os.path.exists(value):
                raise ConfigError(f"{variable}: {value!r} does not exist")
            return


def new_session(ca_file: str | None = None) -> requests.Session:
    """A session that trusts ``ca_file`` (or the environment's CA bundle) and nothing of the
    environment beyond what this module documents."""
    session = requests.Session()
    configure(session, ca_file)
    return session


def configure(session: requests.Session, ca_file: str | None = None) -> requests.Session:
    session.trust_env = False  # no .netrc credentials; CA and proxies are set explicitly
    session.verify = ca_bundle(ca_file)
    return session


def proxies_for(url: str) -> dict[str, str]:
    """The proxies ``requests`` would use for ``url`` (``NO_PROXY`` applied); {} for none."""
    try:
        return get_environ_proxies(url)
    except ValueError:  # a URL urllib cannot split: no proxy, the request will fail on its own
        return {}


def tls_failure(exc: BaseException) -> str | None:
    """The TLS error behind ``exc`` (requests wraps urllib3 wraps ssl), found by type, or None.
    For a certificate that did not verify, OpenSSL's own reason, e.g. "certificate verify
    failed: unable to get local issuer certificate"."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {current.verify_message}"
        if isinstance(current, ssl.SSLError):
            return f"TLS error: {current.reason or type(current).__name__}"
        todo.extend([current.__cause__, current.__context__, getattr(current, "reason", None),
                     *current.args])
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    return None
