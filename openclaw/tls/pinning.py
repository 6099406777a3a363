"""Client-side TLS that trusts exactly one certificate, identified by its SHA-256 fingerprint.

Gateways normally serve self-signed certificates, so neither a CA chain nor a hostname check can
establish trust; Twisted's ``optionsForClientTLS`` does both and would reject them. Instead the
verify callback compares the leaf certificate's DER SHA-256 with the pin (constant time). The
handshake still proves the server holds the leaf's private key, so a matching leaf is enough;
certificates above it (depth > 0) are accepted without judgement because they cannot make a
non-matching leaf pass. No hostname verification is done when pinned.

One :class:`PinnedCertificatePolicy` serves treq/``Agent`` (``IPolicyForHTTPS``), Autobahn's
``connectWS(factory, contextFactory=...)``, ``reactor.connectSSL`` and ``wrapClientTLS``
(``IOpenSSLClientConnectionCreator``).
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from .certificates import normalize_fingerprint

log = Logger()


def _verify_callback(pin: bytes) -> Any:
    def verify(connection: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        if depth > 0:
            return True
        try:
            digest = hashlib.sha256(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)).digest()
        except Exception:  # never raise inside OpenSSL's callback: fail the handshake instead
            log.failure("could not fingerprint the peer certificate")
            return False
        if hmac.compare_digest(digest, pin):
            return True
        log.warn("TLS peer certificate does not match the pinned fingerprint")
        return False

    return verify


@implementer(IPolicyForHTTPS, IOpenSSLClientConnectionCreator)
class PinnedCertificatePolicy:
    """Trust a server only if its leaf certificate has the pinned SHA-256 fingerprint.

    ``fingerprint`` may be ``sha256:AA:BB:...`` or bare hex (see
    :func:`~openclaw.tls.certificates.normalize_fingerprint`). ``hostname`` is sent as SNI when it
    is a DNS name; ``creatorForNetloc`` returns a copy bound to the request's host.
    """

    def __init__(self, fingerprint: str, hostname: str | bytes | None = None) -> None:
        self.fingerprint = normalize_fingerprint(fingerprint)
        self._pin = bytes.fromhex(self.fingerprint)
        if isinstance(hostname, bytes):
            hostname = hostname.decode("ascii")
        self.hostname = hostname
        self._context = self._make_context()

    def _make_context(self) -> SSL.Context:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER, _verify_callback(self._pin))
        return context

    def creatorForNetloc(self, hostname: bytes, port: int) -> PinnedCertificatePolicy:
        return PinnedCertificatePolicy(self.fingerprint, hostname)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_connect_state()
        host = self.hostname
        if host and not isIPAddress(host) and not isIPv6Address(host):
            connection.set_tlsext_host_name(host.encode("idna"))
        return connection


def pinned_connection_creator(fingerprint: str, hostname: str | None = None) -> PinnedCertificatePolicy:
    """A creator for ``connectWS(factory, contextFactory=...)``, ``connectSSL`` or ``wrapClientTLS``."""
    return PinnedCertificatePolicy(fingerprint, hostname)


client_context_factory = pinned_connection_creator
