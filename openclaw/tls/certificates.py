"""Gateway certificate files: read the operator's PEM pair, or create and reuse a self-signed one.

Loading happens once at start-up (before the reactor runs), so plain blocking file I/O is fine.
Fingerprints are the SHA-256 of the certificate's DER encoding, the value clients pin. The
displayed form is ``sha256:AA:BB:...`` (upper-case hex pairs joined by colons, like ``openssl x509
-fingerprint -sha256``); :func:`normalize_fingerprint` turns any spelling into 64 lower-case hex
digits for comparison.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..config.loader import ConfigError
from ..files import write_atomically

TLS_DIR_NAME = "tls"
CERT_FILE_NAME = "gateway-cert.pem"
KEY_FILE_NAME = "gateway-key.pem"
COMMON_NAME = "openclaw-gateway"
VALIDITY_DAYS = 3650
_HEX64 = re.compile(r"[0-9a-f]{64}")


class TLSConfigError(ConfigError):
    """A certificate or key file cannot be used; the message names the file and says why."""


class CertificateFiles(NamedTuple):
    cert_path: str
    key_path: str


def fingerprint_sha256(cert: bytes) -> str:
    """``sha256:AA:BB:...`` for a PEM or DER certificate (the first certificate of a PEM chain)."""
    der = _to_der(cert)
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def normalize_fingerprint(text: str) -> str:
    """64 lower-case hex digits from ``sha256:AA:BB:...``, bare hex, any case; ``ValueError`` otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    value = text.strip().lower()
    value = value.removeprefix("sha256:").replace(":", "")
    if not _HEX64.fullmatch(value):
        raise ValueError(f"not a SHA-256 fingerprint (want 64 hex digits, optionally 'sha256:' and colons): {text!r}")
    return value


def _to_der(cert: bytes) -> bytes:
    if cert.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    return cert


def load_or_create_certificate(
    state_dir: str, cert_path: str | None = None, key_path: str | None = None, auto_generate: bool = False
) -> tuple[bytes, bytes, CertificateFiles]:
    """``(cert PEM, key PEM, paths)`` for the listener.

    Explicit paths win and must both be given; otherwise with ``auto_generate`` the pair under
    ``<state_dir>/tls`` is reused or created. Raises :class:`TLSConfigError` naming the file.
    """
    if cert_path or key_path:
        if not (cert_path and key_path):
            raise TLSConfigError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        return _load_pair(os.path.expanduser(cert_path), os.path.expanduser(key_path))
    if not auto_generate:
        raise TLSConfigError("TLS is enabled but no certificate is set: give --tls-cert/--tls-key or gateway.tls.autoGenerate")
    directory = os.path.join(state_dir, TLS_DIR_NAME)
    files = CertificateFiles(os.path.join(directory, CERT_FILE_NAME), os.path.join(directory, KEY_FILE_NAME))
    if os.path.exists(files.cert_path) or os.path.exists(files.key_path):
        return _load_pair(*files)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    cert_pem, key_pem = generate_self_signed()
    # Key first: a cert without its key on disk would be unusable on the next start.
    write_atomically(files.key_path, key_pem, 0o600)
    write_atomically(files.cert_path, cert_pem, 0o644)
    return cert_pem, key_pem, files


def generate_self_signed() -> tuple[bytes, bytes]:
    """A fresh P-256 key and a ~10-year self-signed certificate for localhost (PEM, PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise TLSConfigError(f"TLS {what} file {path} does not exist") from None
    except OSError as exc:
        raise TLSConfigError(f"TLS {what} file {path} cannot be read: {exc.strerror or exc}") from None


def _load_pair(cert_path: str, key_path: str) -> tuple[bytes, bytes, CertificateFiles]:
    cert_pem, key_pem = _read(cert_path, "certificate"), _read(key_path, "key")
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TLSConfigError(f"TLS certificate file {cert_path} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TLSConfigError(f"TLS key file {key_path} is encrypted; give an unencrypted PEM key") from None
    except Exception:  # cryptography raises ValueError or UnsupportedAlgorithm
        raise TLSConfigError(f"TLS key file {key_path} is not a PEM private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != certs[0].public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise TLSConfigError(f"TLS key file {key_path} does not match the certificate in {cert_path}")
    return cert_pem, key_pem, CertificateFiles(cert_path, key_path)
