"""TLS for the gateway: certificate files (:mod:`.certificates`) and client-side pinning (:mod:`.pinning`).

Self-signed certificates are the normal case for a gateway, so clients trust it by pinning the
SHA-256 fingerprint of its certificate instead of a CA chain plus hostname.
"""
from .certificates import (
    CertificateFiles,
    TLSConfigError,
    fingerprint_sha256,
    load_or_create_certificate,
    normalize_fingerprint,
)

__all__ = [
    "CertificateFiles",
    "TLSConfigError",
    "fingerprint_sha256",
    "load_or_create_certificate",
    "normalize_fingerprint",
]
