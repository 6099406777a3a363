"""Server-side TLS: the pyOpenSSL context options for the gateway listener.

The listener keeps its TCP endpoint (IPv4 or IPv6) and wraps the site in ``TLSMemoryBIOFactory``,
which is exactly what ``SSL4ServerEndpoint`` does internally but also works for ``::1``.
"""
from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import ssl
from twisted.protocols.tls import TLSMemoryBIOFactory


def server_options(cert_pem: bytes, key_pem: bytes) -> ssl.CertificateOptions:
    """TLS 1.2+ options serving ``cert_pem`` (a leaf, optionally followed by its chain) with ``key_pem``.

    Session tickets are off: the gateway has no ticket-key rotation, and resumption buys little
    for long-lived WebSocket connections.
    """
    certs = x509.load_pem_x509_certificates(cert_pem)
    leaf = ssl.PrivateCertificate.loadPEM(
        key_pem.decode("ascii") + "\n" + certs[0].public_bytes(serialization.Encoding.PEM).decode("ascii")
    )
    chain = [
        ssl.Certificate.loadPEM(cert.public_bytes(serialization.Encoding.PEM)).original for cert in certs[1:]
    ]
    return ssl.CertificateOptions(
        privateKey=leaf.privateKey.original,
        certificate=leaf.original,
        extraCertChain=chain or None,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        enableSessionTickets=False,
    )


def wrap_factory(options: ssl.CertificateOptions, factory: Any) -> TLSMemoryBIOFactory:
    """``factory`` behind TLS, for any stream server endpoint."""
    return TLSMemoryBIOFactory(options, False, factory)
