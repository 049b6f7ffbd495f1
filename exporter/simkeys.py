"""Keys and certificates the simulator makes, with ``cryptography``: the factory's RS256 pizza
JWTs (as the real factory signs them, with a ``kid``), and a private CA with a certificate for
serving the factory over TLS, as a factory behind a private or corporate CA is served.

Imported by the simulator only, so the exporter and the sidecar never load ``cryptography``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import random
import time

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

JWT_ISSUER = "cs329.click"
JWT_LIFETIME = 24 * 3600
_E = 65537
_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p ** 0.5) + 1, 2))]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _probable_prime(n: int, rng: random.Random, rounds: int = 24) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(rng: random.Random, bits: int) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        if (candidate - 1) % _E and _probable_prime(candidate, rng):
            return candidate


def _rsa_from_seed(seed: bytes, bits: int = 2048) -> rsa.RSAPrivateKey:
    """The same key for the same seed, in any process: simulators given one seed verify each
    other's pizzas, as the one real factory verifies every student's."""
    rng = random.Random(hashlib.sha256(b"pizza-factory-jwt:" + seed).digest())
    while True:
        p, q = _prime(rng, bits // 2), _prime(rng, bits // 2)
        if p != q and (p * q).bit_length() == bits:
            break
    d = pow(_E, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                    rsa.RSAPublicNumbers(_E, p * q))
    return numbers.private_key()


class JwtSigner:
    """RS256 pizza JWTs with a ``kid`` and ``iat``, ``exp``, ``iss`` claims."""

    def __init__(self, seed: bytes | None = None) -> None:
        self.key = (_rsa_from_seed(seed) if seed is not None
                    else rsa.generate_private_key(public_exponent=_E, key_size=2048))
        public = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = hashlib.sha256(public).hexdigest()[:32]

    def sign(self, claims: dict, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        head = b64url(json.dumps({"alg": "RS256", "kid": self.kid, "typ": "JWT"},
                                 separators=(",", ":")).encode())
        body = b64url(json.dumps({**claims, "iat": issued, "exp": issued + JWT_LIFETIME,
                                  "iss": JWT_ISSUER}, separators=(",", ":")).encode())
        signature = self.key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{b64url(signature)}"

    def verify(self, token: object) -> dict | None:
        """The claims of a token this signer made and that has not expired, else None."""
        if not isinstance(token, str) or token.count(".") != 2:
            return None
        head, body, signature = token.split(".")
        try:
            header = json.loads(unb64url(head))
            if not isinstance(header, dict) or header.get("alg") != "RS256" \
                    or header.get("kid") != self.kid:
                return None
            self.key.public_key().verify(unb64url(signature), f"{head}.{body}".encode(),
                                         padding.PKCS1v15(), hashes.SHA256())
            claims = json.loads(unb64url(body))
        except (ValueError, UnicodeDecodeError, InvalidSignature):
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) \
                or claims["exp"] < time.time():
            return None
        return claims


def make_tls_files(directory: str, host: str) -> tuple[str, str, str]:
    """A private CA and a certificate it signed for ``host`` (and localhost, 127.0.0.1), written
    as ``ca.pem``, ``factory.pem`` and ``factory-key.pem`` in ``directory``: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pizza-probe simulator CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        address = ipaddress.ip_address(host)
        if str(address) != "127.0.0.1":
            names.append(x509.IPAddress(address))
    except ValueError:
        if host != "localhost":
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    os.makedirs(directory, exist_ok=True)
    paths = tuple(os.path.join(directory, name) for name in ("ca.pem", "factory.pem",
                                                              "factory-key.pem"))
    pem = serialization.Encoding.PEM
    with open(paths[0], "wb") as handle:
        handle.write(ca.public_bytes(pem))
    with open(paths[1], "wb") as handle:
        handle.write(cert.public_bytes(pem))
    fd = os.open(paths[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return paths  # type: ignore[return-value]
