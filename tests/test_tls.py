"""TLS: certificate files, fingerprints, settings, and a gateway served over real loopback TLS.

The loopback tests run the whole ``tap.makeService`` tree on the global reactor (as
``test_restart`` does) and talk to it with treq and Autobahn through
:class:`~openclaw.tls.pinning.PinnedCertificatePolicy`: the right pin connects to the
self-signed certificate, a wrong one fails the handshake. Every test waits until both ends of
every connection to the gateway's port are gone, so the reactor is left clean without sleeping.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import stat

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import SSL
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.logger import globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    ResponseNeverReceived,
    readBody,
)

from openclaw import tap
from openclaw.config.loader import ConfigError
from openclaw.http.site import GatewaySite
from openclaw.settings import resolve_settings
from openclaw.tls import certificates
from openclaw.tls.certificates import (
    TLSConfigError,
    fingerprint_sha256,
    load_or_create_certificate,
    normalize_fingerprint,
)
from openclaw.tls.pinning import PinnedCertificatePolicy, pinned_connection_creator

from .support.gateway import TOKEN
from .support.loopback import _upstream_connections, wait_until
from .support.wsclient import connect, open_client
from .test_restart import free_port, gateway_threads
from .test_service import _TreeMixin

WRONG_PIN = "sha256:" + ":".join(["AB"] * 32)


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(data)
    return path


class CertificateTests(SynchronousTestCase):
    """Self-signed generation, reuse, modes, and clear errors for unusable files."""

    def setUp(self) -> None:
        self.state_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.state_dir)

    def test_generates_a_self_signed_certificate(self):
        cert_pem, key_pem, files = load_or_create_certificate(self.state_dir, auto_generate=True)
        self.assertEqual(files.cert_path, os.path.join(self.state_dir, "tls", "gateway-cert.pem"))
        self.assertEqual(files.key_path, os.path.join(self.state_dir, "tls", "gateway-key.pem"))
        cert = x509.load_pem_x509_certificate(cert_pem)
        self.assertEqual(cert.subject.rfc4514_string(), "CN=openclaw-gateway")
        self.assertEqual(cert.issuer, cert.subject)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual([str(ip) for ip in san.get_values_for_type(x509.IPAddress)], ["127.0.0.1", "::1"])
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        self.assertGreater(lifetime.days, 9 * 365)
        with open(files.cert_path, "rb") as handle:
            self.assertEqual(handle.read(), cert_pem)
        with open(files.key_path, "rb") as handle:
            self.assertEqual(handle.read(), key_pem)

    def test_key_file_is_private(self):
        _, _, files = load_or_create_certificate(self.state_dir, auto_generate=True)
        self.assertEqual(stat.S_IMODE(os.stat(files.key_path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(files.key_path)).st_mode), 0o700)
        self.assertEqual(sorted(os.listdir(os.path.dirname(files.key_path))), ["gateway-cert.pem", "gateway-key.pem"])

    def test_reused_on_later_starts(self):
        """Clients pin the fingerprint, so a restart must not mint a new certificate."""
        first, _, _ = load_or_create_certificate(self.state_dir, auto_generate=True)
        second, _, _ = load_or_create_certificate(self.state_dir, auto_generate=True)
        self.assertEqual(fingerprint_sha256(first), fingerprint_sha256(second))

    def test_explicit_paths(self):
        cert_pem, key_pem = certificates.generate_self_signed()
        cert_path = _write(os.path.join(self.state_dir, "c.pem"), cert_pem)
        key_path = _write(os.path.join(self.state_dir, "k.pem"), key_pem)
        loaded_cert, loaded_key, files = load_or_create_certificate(self.state_dir, cert_path, key_path, auto_generate=True)
        self.assertEqual((loaded_cert, loaded_key), (cert_pem, key_pem))
        self.assertEqual(files, (cert_path, key_path))
        self.assertFalse(os.path.exists(os.path.join(self.state_dir, "tls")))

    def assertRefused(self, needle: str, *args, **kwargs) -> TLSConfigError:
        error = self.assertRaises(TLSConfigError, load_or_create_certificate, self.state_dir, *args, **kwargs)
        self.assertIsInstance(error, ConfigError)
        self.assertIn(needle, str(error))
        return error

    def test_missing_file_is_named(self):
        _, key_pem = certificates.generate_self_signed()
        key_path = _write(os.path.join(self.state_dir, "k.pem"), key_pem)
        missing = os.path.join(self.state_dir, "nope.pem")
        error = self.assertRefused(missing, missing, key_path)
        self.assertIn("does not exist", str(error))

    def test_unreadable_file_is_named(self):
        cert_pem, _ = certificates.generate_self_signed()
        cert_path = _write(os.path.join(self.state_dir, "c.pem"), cert_pem)
        error = self.assertRefused(self.state_dir, cert_path, self.state_dir)  # a directory cannot be read
        self.assertIn("cannot be read", str(error))

    def test_not_pem(self):
        cert_pem, key_pem = certificates.generate_self_signed()
        junk = _write(os.path.join(self.state_dir, "junk.pem"), b"hello\n")
        key_path = _write(os.path.join(self.state_dir, "k.pem"), key_pem)
        cert_path = _write(os.path.join(self.state_dir, "c.pem"), cert_pem)
        self.assertIn("not a PEM certificate", str(self.assertRefused(junk, junk, key_path)))
        self.assertIn("not a PEM private key", str(self.assertRefused(junk, cert_path, junk)))

    def test_key_mismatch(self):
        cert_pem, _ = certificates.generate_self_signed()
        _, other_key = certificates.generate_self_signed()
        cert_path = _write(os.path.join(self.state_dir, "c.pem"), cert_pem)
        key_path = _write(os.path.join(self.state_dir, "k.pem"), other_key)
        error = self.assertRefused(key_path, cert_path, key_path)
        self.assertIn("does not match", str(error))

    def test_one_path_or_nothing_is_refused(self):
        self.assertRefused("both", cert_path="/x/cert.pem")
        self.assertRefused("autoGenerate")


class FingerprintTests(SynchronousTestCase):
    def test_format_matches_openssl(self):
        cert_pem, _ = certificates.generate_self_signed()
        cert = x509.load_pem_x509_certificate(cert_pem)
        expected = cert.fingerprint(hashes.SHA256()).hex().upper()
        text = fingerprint_sha256(cert_pem)
        self.assertEqual(text, "sha256:" + ":".join(expected[i : i + 2] for i in range(0, 64, 2)))
        self.assertEqual(fingerprint_sha256(cert.public_bytes(serialization.Encoding.DER)), text)

    def test_normalize_accepts_every_spelling(self):
        hexdigest = hashlib.sha256(b"x").hexdigest()
        colons = ":".join(hexdigest[i : i + 2] for i in range(0, 64, 2))
        for text in (hexdigest, hexdigest.upper(), colons, "sha256:" + colons.upper(), " SHA256:" + hexdigest + "\n"):
            self.assertEqual(normalize_fingerprint(text), hexdigest, text)

    def test_normalize_rejects_junk(self):
        for text in ("", "sha256:", "abc", "sha1:" + "a" * 40, "z" * 64, "a" * 63, "a" * 65, "md5:" + "a" * 64):
            self.assertRaises(ValueError, normalize_fingerprint, text)
        self.assertRaises(ValueError, PinnedCertificatePolicy, "junk")


class TLSSettingsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.state_dir)

    def resolve(self, config: dict | None = None, **options):
        if config is not None:
            with open(os.path.join(self.state_dir, "openclaw.json"), "w", encoding="utf-8") as handle:
                json.dump(config, handle)
        opts = {"state-dir": self.state_dir, **{key.replace("_", "-"): value for key, value in options.items()}}
        return resolve_settings(opts, env={})

    def test_off_by_default(self):
        settings = self.resolve()
        self.assertEqual(
            (settings.tls_enabled, settings.tls_cert_path, settings.tls_key_path, settings.tls_auto_generate),
            (False, None, None, False),
        )

    def test_config_paths(self):
        settings = self.resolve({"gateway": {"tls": {"enabled": True, "certPath": "/c.pem", "keyPath": "/k.pem"}}})
        self.assertEqual((settings.tls_enabled, settings.tls_cert_path, settings.tls_key_path), (True, "/c.pem", "/k.pem"))
        self.assertFalse(settings.tls_auto_generate)

    def test_config_paths_unused_when_disabled(self):
        settings = self.resolve({"gateway": {"tls": {"certPath": "/c.pem", "keyPath": "/k.pem"}}})
        self.assertFalse(settings.tls_enabled)

    def test_enabled_without_paths_auto_generates(self):
        settings = self.resolve({"gateway": {"tls": {"enabled": True}}})
        self.assertTrue(settings.tls_enabled)
        self.assertTrue(settings.tls_auto_generate)

    def test_enabled_without_paths_and_no_auto_generate_is_refused(self):
        error = self.assertRaises(ConfigError, self.resolve, {"gateway": {"tls": {"enabled": True, "autoGenerate": False}}})
        self.assertIn("autoGenerate", str(error))

    def test_command_line_wins_and_implies_enabled(self):
        config = {"gateway": {"tls": {"enabled": False, "certPath": "/c.pem", "keyPath": "/k.pem"}}}
        settings = self.resolve(config, tls_cert="/cli-c.pem", tls_key="/cli-k.pem")
        self.assertEqual((settings.tls_enabled, settings.tls_cert_path, settings.tls_key_path), (True, "/cli-c.pem", "/cli-k.pem"))

    def test_cert_without_key_is_refused(self):
        self.assertRaises(ConfigError, self.resolve, tls_cert="/c.pem")
        self.assertRaises(ConfigError, self.resolve, tls_key="/k.pem")
        self.assertRaises(ConfigError, self.resolve, {"gateway": {"tls": {"enabled": True, "certPath": "/c.pem"}}})


class TLSTreeTests(_TreeMixin, SynchronousTestCase):
    """``makeService`` wraps every listener in TLS when enabled and logs the fingerprint."""

    def capture_log(self) -> list[dict]:
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def test_plain_tcp_when_off(self):
        root, _ = self.build("--token", "secret")
        self.assertIsNone(root.gateway.tls_fingerprint)
        for service in root.tree.getServiceNamed("listeners"):
            self.assertIsInstance(service.factory, GatewaySite)

    def test_tls_listeners_and_fingerprint(self):
        cert_pem, key_pem = certificates.generate_self_signed()
        os.makedirs(self.state_dir)
        cert_path = _write(os.path.join(self.state_dir, "c.pem"), cert_pem)
        key_path = _write(os.path.join(self.state_dir, "k.pem"), key_pem)
        events = self.capture_log()
        root, _ = self.build("--token", "secret", "--tls-cert", cert_path, "--tls-key", key_path)
        self.assertEqual(root.gateway.tls_fingerprint, fingerprint_sha256(cert_pem))
        listeners = list(root.tree.getServiceNamed("listeners"))
        self.assertEqual([service.name for service in listeners], ["127.0.0.1", "::1"])
        for service in listeners:
            self.assertIsInstance(service.factory, TLSMemoryBIOFactory)
            self.assertIsInstance(service.factory.wrappedFactory, GatewaySite)
        # Not logged while building: the log file is not open yet. It is logged when the
        # listeners start (TLSLoopbackTests.test_fingerprint_is_in_the_log_file).
        logged = [e for e in events if "TLS certificate SHA-256 fingerprint" in e.get("log_format", "")]
        self.assertEqual(logged, [])

    def test_bad_certificate_is_a_usage_error(self):
        missing = os.path.join(os.path.abspath(self.mktemp()), "missing.pem")
        error = self.assertRaises(usage.UsageError, self.parse, "--tls-cert", missing, "--tls-key", missing)
        self.assertIn(missing, str(error))


class TLSLoopbackTests(TestCase):
    """The real tree on loopback with an auto-generated certificate; clients pin it."""

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        self.assertEqual(gateway_threads(), [], "a previous test leaked gateway threads")
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.port = free_port()
        config = {"gateway": {"port": self.port, "auth": {"mode": "token", "token": TOKEN}, "tls": {"enabled": True}}}
        with open(os.path.join(self.dir, "openclaw.json"), "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.root = tap.makeService({"state-dir": self.dir}, reactor=reactor, env={})
        self.addCleanup(self._stop_root)
        yield self.root.startService()
        self.fingerprint = self.root.gateway.tls_fingerprint

    @inlineCallbacks
    def _stop_root(self):
        if self.root.running:
            yield self.root.stopService()
        yield wait_until(lambda: not _upstream_connections(self.port))
        self.assertEqual(gateway_threads(), [])

    def http(self, pin: str) -> HTTPClient:
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(reactor, contextFactory=PinnedCertificatePolicy(pin), pool=pool))

    def test_fingerprint_logged_at_start_up(self):
        with open(os.path.join(self.dir, "tls", "gateway-cert.pem"), "rb") as handle:
            self.assertEqual(self.fingerprint, fingerprint_sha256(handle.read()))
        logged = [e for e in self.events if e.get("fingerprint") == self.fingerprint]
        self.assertEqual(len(logged), 1)
        self.assertIn("TLS certificate SHA-256 fingerprint: {fingerprint}", logged[0]["log_format"])

    @inlineCallbacks
    def test_fingerprint_is_in_the_log_file(self):
        yield self.root.gateway.log_file.flush()  # lines are written in batches off the reactor
        with open(os.path.join(self.dir, "logs", "gateway.log"), encoding="utf-8") as handle:
            lines = [json.loads(line) for line in handle]
        found = [line for line in lines if line["message"].startswith("TLS certificate SHA-256 fingerprint: ")]
        self.assertEqual(len(found), 1, lines)
        self.assertIn(self.fingerprint, found[0]["message"])
        self.assertEqual((found[0]["level"], found[0]["subsystem"]), ("info", "tap"))

    @inlineCallbacks
    def test_https_with_the_right_pin(self):
        response = yield self.http(self.fingerprint).get(f"https://127.0.0.1:{self.port}/health")
        self.assertEqual(response.code, 200)
        yield response.content()

    @inlineCallbacks
    def test_bare_hex_pin_works_too(self):
        response = yield self.http(normalize_fingerprint(self.fingerprint)).get(f"https://localhost:{self.port}/health")
        self.assertEqual(response.code, 200)
        yield response.content()

    @inlineCallbacks
    def test_https_over_ipv6(self):
        if not socket.has_ipv6 or "::1" not in [s.name for s in self.root.tree.getServiceNamed("listeners")]:
            raise self.skipTest("no IPv6 loopback")
        probe = socket.socket(socket.AF_INET6)
        try:
            probe.bind(("::1", 0))
        except OSError:
            raise self.skipTest("no IPv6 loopback") from None
        finally:
            probe.close()
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, contextFactory=PinnedCertificatePolicy(self.fingerprint), pool=pool)
        # treq (hyperlink) cannot encode an IPv6 literal host, so use the Agent directly.
        response = yield agent.request(b"GET", f"https://[::1]:{self.port}/health".encode("ascii"))
        self.assertEqual(response.code, 200)
        yield readBody(response)

    @inlineCallbacks
    def test_https_with_a_wrong_pin_fails(self):
        failure = None
        try:
            yield self.http(WRONG_PIN).get(f"https://127.0.0.1:{self.port}/health")
        except Exception as exc:
            failure = exc
        self.assertIsNotNone(failure, "the request with a wrong pin succeeded")
        reasons = getattr(failure, "reasons", [])
        self.assertTrue(any(reason.check(SSL.Error) for reason in reasons), repr(failure))

    @inlineCallbacks
    def test_plain_http_is_not_served(self):
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        with self.assertRaises(ResponseNeverReceived):
            yield HTTPClient(Agent(reactor, pool=pool)).get(f"http://127.0.0.1:{self.port}/health")

    @inlineCallbacks
    def test_wss_with_the_right_pin(self):
        client, hello = yield connect(
            self, f"wss://127.0.0.1:{self.port}", context_factory=pinned_connection_creator(self.fingerprint)
        )
        self.assertTrue(hello["ok"], hello)
        self.assertEqual(hello["payload"]["type"], "hello-ok")
        yield client.close()

    @inlineCallbacks
    def test_gateway_client_pins_the_certificate(self):
        """The Python client accepts the self-signed certificate it pins, and only that one."""
        from openclaw.client import ClientOptions, GatewayCallError, GatewayClient

        url = f"wss://127.0.0.1:{self.port}"
        good = GatewayClient(ClientOptions(url=url, token=TOKEN, tls_fingerprint=self.fingerprint, reconnect=False))
        hello = yield good.connect()
        self.assertEqual(hello["type"], "hello-ok")
        health = yield good.call("health")
        self.assertIs(health["ok"], True)
        yield good.close()
        bad = GatewayClient(ClientOptions(url=url, token=TOKEN, tls_fingerprint=WRONG_PIN, reconnect=False))
        with self.assertRaises(GatewayCallError):
            yield bad.connect()
        self.assertIsNone(bad.hello)

    @inlineCallbacks
    def test_wss_with_a_wrong_pin_fails(self):
        with self.assertRaises(ConnectionError):
            yield open_client(self, f"wss://127.0.0.1:{self.port}", context_factory=pinned_connection_creator(WRONG_PIN))
