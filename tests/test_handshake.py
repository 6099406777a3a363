"""The connect handshake (protocol §1.3–§4, golden-frames "handshake failure" sections).

Every failure row of the golden summary table is checked over a real loopback socket, asserting
the exact ``res`` error code, ``details.code``, WebSocket close code and close reason, because
clients branch on all four (e.g. a 1002 means "upgrade me", a 1008 with "device token mismatch"
triggers one quick retry). Timers are driven with ``task.Clock``; nothing sleeps.

Admission rules that do not depend on the wire (rate limiting by remote address) are driven
through :meth:`Handshake.admit` directly with a ``ConnectionInfo`` carrying a non-loopback address.
"""
from __future__ import annotations

import base64
import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.connection.handshake import ConnectionInfo
from openclaw.connection.protocol import truncate_reason
from openclaw.protocol.constants import CLOSE_REASON_MAX_BYTES, MAX_PREAUTH_PAYLOAD_BYTES
from openclaw.protocol.errors import GatewayError
from openclaw.security.device_identity import DeviceKeyPair
from openclaw.security.shared_secret import AuthSettings
from openclaw.settings import GatewaySettings

from .support.gateway import TOKEN, make_gateway, start_gateway
from .support.wsclient import CLI_CLIENT, OPERATOR_SCOPES, connect, connect_params, open_client
from .support.shapes import rate_limited_error

TOKEN_MISMATCH = "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)"
TOKEN_MISSING = "unauthorized: gateway token missing (use this gateway's gateway.auth.token or pair the device)"
NODE_CLIENT = {"id": "node-host", "version": "1.0.0", "platform": "linux", "mode": "node"}
PROBE_CLIENT = {"id": "openclaw-probe", "version": "1.0.0", "platform": "linux", "mode": "probe"}
TUI_CLIENT = {"id": "openclaw-tui", "version": "1.0.0", "platform": "linux", "mode": "ui"}
PROTOCOL_MISMATCH_DETAILS = {"code": "PROTOCOL_MISMATCH", "expectedProtocol": 4, "minimumProbeProtocol": 3}


# -- helpers ---------------------------------------------------------------------------------


@inlineCallbacks
def closed_with(client):
    """The close the server sent, with an absent reason reported as ``''`` like the golden table."""
    code, reason = yield client.closed
    return (code, reason or "")


@inlineCallbacks
def connect_expecting_close(client, params, request_id="c1"):
    """Send ``connect`` on an open socket; return ``(res frame, close code, close reason)``."""
    client.send({"type": "req", "id": request_id, "method": "connect", "params": params})
    response = yield client.next_frame()
    code, reason = yield closed_with(client)
    return (response, code, reason)


def signed_params(socket, **kwargs):
    """Connect params signed for this socket's challenge (nonce and ``ts`` as ``signedAt``)."""
    payload = socket.challenge["payload"]
    kwargs.setdefault("nonce", payload["nonce"])
    kwargs.setdefault("signed_at_ms", payload["ts"])
    return connect_params(**kwargs)


class _RawHttp(Protocol):
    """Collects everything the server writes until it hangs up (for the HTTP 503 upgrade refusal)."""

    def __init__(self, request: bytes):
        self.request = request
        self.data = b""
        self.done: Deferred = Deferred()

    def connectionMade(self):
        self.transport.write(self.request)

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.done.callback(self.data)


def upgrade_request(port: int) -> bytes:
    return (
        "GET / HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


class HandshakeTestCase(TestCase):
    """Real-socket tests share a gateway per test (token auth, real reactor clock)."""

    @inlineCallbacks
    def setUp(self):
        self.running = yield start_gateway(self)

    def assertNoResponse(self, client):
        """No ``res`` (or any other frame) arrived after the challenge."""
        self.assertEqual(list(client.frames), [])

    def assertHandshakeError(self, response, code, message, details=None, request_id="c1"):
        self.assertEqual(response["type"], "res")
        self.assertEqual(response["id"], request_id)
        self.assertIs(response["ok"], False)
        expected = {"code": code, "message": message}
        if details is not None:
            expected["details"] = details
        self.assertEqual(response["error"], expected)


# -- the challenge ---------------------------------------------------------------------------


class ChallengeTests(HandshakeTestCase):
    """§1.3: the server speaks first with a per-socket nonce, without ``seq``."""

    @inlineCallbacks
    def test_challenge_shape(self):
        client = yield open_client(self, self.running.url)
        challenge = client.challenge
        self.assertEqual(set(challenge), {"type", "event", "payload"})
        self.assertEqual(challenge["type"], "event")
        self.assertEqual(challenge["event"], "connect.challenge")
        self.assertEqual(set(challenge["payload"]), {"nonce", "ts", "capabilities"})
        self.assertEqual(challenge["payload"]["capabilities"], ["model-catalog-snapshot"])
        self.assertIsInstance(challenge["payload"]["ts"], int)
        yield client.close()

    @inlineCallbacks
    def test_nonce_is_per_socket(self):
        first = yield open_client(self, self.running.url)
        second = yield open_client(self, self.running.url)
        self.assertNotEqual(first.challenge["payload"]["nonce"], second.challenge["payload"]["nonce"])
        yield first.close()
        yield second.close()


class IdleConnectionMemoryTests(HandshakeTestCase):
    """Memory per idle connection (issue 18): once admitted, a connection keeps neither the
    connect frame nor the upgrade's headers, and its outbound queue holds no buffer."""

    @inlineCallbacks
    def test_admitted_connection_drops_handshake_state(self):
        client, _ = yield connect(self, self.running.url)
        [server] = list(self.running.factory.connections)
        self.assertIsNone(server._connect_params)
        self.assertIsNone(server._info)
        self.assertIsNone(server._outbound._frames)
        self.assertIsNotNone(server._client)
        yield client.close()


# -- golden summary table: frame-level failures ----------------------------------------------


class FirstFrameFailureTests(HandshakeTestCase):
    """§1.4 rows of the golden table that fail before a connect is even parsed."""

    @inlineCallbacks
    def test_non_json_first_frame_closes_1000_without_res(self):
        client = yield open_client(self, self.running.url)
        client.send_raw(b"hello, not json")
        code, reason = yield closed_with(client)
        self.assertEqual((code, reason), (1000, ""))
        self.assertNoResponse(client)

    @inlineCallbacks
    def test_binary_first_frame_closes_1000_without_res(self):
        client = yield open_client(self, self.running.url)
        client.send_raw(b"\x00\x01binary", binary=True)
        code, reason = yield closed_with(client)
        self.assertEqual((code, reason), (1000, ""))
        self.assertNoResponse(client)

    @inlineCallbacks
    def test_invalid_frame_shape_closes_1008_without_res(self):
        client = yield open_client(self, self.running.url)
        client.send({"type": "foo"})
        code, reason = yield closed_with(client)
        self.assertEqual((code, reason), (1008, "invalid request frame"))
        self.assertNoResponse(client)

    @inlineCallbacks
    def test_event_frame_from_client_closes_1008_without_res(self):
        """A well-formed *event* is still not a request frame."""
        client = yield open_client(self, self.running.url)
        client.send({"type": "event", "event": "tick"})
        code, reason = yield closed_with(client)
        self.assertEqual((code, reason), (1008, "invalid request frame"))
        self.assertNoResponse(client)

    @inlineCallbacks
    def test_first_request_not_connect_gets_res_then_1008(self):
        client = yield open_client(self, self.running.url)
        client.send({"type": "req", "id": "x1", "method": "health", "params": {}})
        response = yield client.next_frame()
        message = "invalid handshake: first request must be connect"
        self.assertHandshakeError(response, "INVALID_REQUEST", message, request_id="x1")
        code, reason = yield closed_with(client)
        self.assertEqual((code, reason), (1008, message))


# -- golden summary table: connect params ----------------------------------------------------


class ConnectParamsFailureTests(HandshakeTestCase):
    """Schema failures, protocol negotiation and role parsing (§1.4, §0, §2.2 steps 2–3)."""

    @inlineCallbacks
    def test_unknown_client_id(self):
        client = yield open_client(self, self.running.url)
        params = signed_params(client, client=dict(CLI_CLIENT, id="my-bench"), device=DeviceKeyPair.generate())
        response, code, reason = yield connect_expecting_close(client, params)
        message = "invalid connect params: at /client/id: must be equal to one of the allowed values"
        self.assertHandshakeError(response, "INVALID_REQUEST", message)
        self.assertEqual((code, reason), (1008, message))

    @inlineCallbacks
    def test_params_missing_client(self):
        client = yield open_client(self, self.running.url)
        response, code, reason = yield connect_expecting_close(client, {"minProtocol": 4, "maxProtocol": 4})
        message = "invalid connect params: must have required property 'client'"
        self.assertHandshakeError(response, "INVALID_REQUEST", message)
        self.assertEqual((code, reason), (1008, message))

    @inlineCallbacks
    def test_invalid_role(self):
        client = yield open_client(self, self.running.url)
        params = signed_params(client, role="superuser", device=DeviceKeyPair.generate())
        response, code, reason = yield connect_expecting_close(client, params)
        self.assertHandshakeError(response, "INVALID_REQUEST", "invalid role")
        self.assertEqual((code, reason), (1008, "invalid role"))

    @inlineCallbacks
    def assertProtocolMismatch(self, low, high, **kwargs):
        client = yield open_client(self, self.running.url)
        params = signed_params(client, min_protocol=low, max_protocol=high, device=DeviceKeyPair.generate(), **kwargs)
        response, code, reason = yield connect_expecting_close(client, params)
        details = dict(PROTOCOL_MISMATCH_DETAILS, clientMinProtocol=low, clientMaxProtocol=high)
        self.assertHandshakeError(response, "INVALID_REQUEST", "protocol mismatch", details)
        self.assertEqual((code, reason), (1002, "protocol mismatch"))

    def test_protocol_1_only(self):
        """min=max=1: far too old → 1002, not 1008 (clients read 1002 as "upgrade me")."""
        return self.assertProtocolMismatch(1, 1)

    def test_protocol_1_to_2(self):
        """The exact golden request (min 1, max 2); details echo both bounds."""
        return self.assertProtocolMismatch(1, 2)

    def test_protocol_5_only(self):
        """A future client (min=max=5) is refused too: 4 must be inside the window."""
        return self.assertProtocolMismatch(5, 5)

    def test_protocol_3_operator(self):
        """v3 is only for node-mode nodes and probes; a v3 operator is refused."""
        return self.assertProtocolMismatch(3, 3)

    def test_protocol_3_node_role_without_node_mode(self):
        """The legacy node window needs role node *and* client.mode node."""
        return self.assertProtocolMismatch(3, 3, role="node", scopes=[], client=dict(CLI_CLIENT))

    @inlineCallbacks
    def test_long_close_reason_is_truncated_on_the_wire(self):
        """The res carries the full message; the close reason is cut to 120 UTF-8 bytes."""
        client = yield open_client(self, self.running.url)
        params = signed_params(client)
        params["é" * 80] = True  # unknown top-level property → long, multibyte error text
        response, code, reason = yield connect_expecting_close(client, params)
        message = response["error"]["message"]
        self.assertTrue(message.startswith("invalid connect params: "), message)
        self.assertIn("é" * 80, message)
        self.assertEqual(code, 1008)
        self.assertEqual(reason, truncate_reason(message))
        self.assertLessEqual(len(reason.encode("utf-8")), CLOSE_REASON_MAX_BYTES)
        self.assertTrue(message.startswith(reason))


# -- golden summary table: auth and device proof ---------------------------------------------


class SharedSecretFailureTests(HandshakeTestCase):
    """§4.2: auth failures are ``INVALID_REQUEST`` with ``AUTH_*`` details, then 1008."""

    @inlineCallbacks
    def test_bad_token_with_device(self):
        """With a device and no device token, the client is told to retry with a device token."""
        client = yield open_client(self, self.running.url)
        params = signed_params(client, token="wrong-token", device=DeviceKeyPair.generate())
        response, code, reason = yield connect_expecting_close(client, params)
        details = {
            "code": "AUTH_TOKEN_MISMATCH",
            "authReason": "token_mismatch",
            "canRetryWithDeviceToken": True,
            "recommendedNextStep": "retry_with_device_token",
        }
        self.assertHandshakeError(response, "INVALID_REQUEST", TOKEN_MISMATCH, details)
        self.assertEqual((code, reason), (1008, TOKEN_MISMATCH))

    @inlineCallbacks
    def test_bad_token_without_device(self):
        """Without a device there is nothing to retry with: update the credentials."""
        client = yield open_client(self, self.running.url)
        response, code, reason = yield connect_expecting_close(client, connect_params(token="wrong-token"))
        details = {
            "code": "AUTH_TOKEN_MISMATCH",
            "authReason": "token_mismatch",
            "canRetryWithDeviceToken": False,
            "recommendedNextStep": "update_auth_credentials",
        }
        self.assertHandshakeError(response, "INVALID_REQUEST", TOKEN_MISMATCH, details)
        self.assertEqual((code, reason), (1008, TOKEN_MISMATCH))

    @inlineCallbacks
    def test_no_token_with_device(self):
        client = yield open_client(self, self.running.url)
        params = signed_params(client, token=None, device=DeviceKeyPair.generate())
        self.assertNotIn("token", params["auth"])
        response, code, reason = yield connect_expecting_close(client, params)
        details = {
            "code": "AUTH_TOKEN_MISSING",
            "authReason": "token_missing",
            "canRetryWithDeviceToken": False,
            "recommendedNextStep": "update_auth_configuration",
        }
        self.assertHandshakeError(response, "INVALID_REQUEST", TOKEN_MISSING, details)
        self.assertEqual((code, reason), (1008, TOKEN_MISSING))


class DeviceProofFailureTests(HandshakeTestCase):
    """§3.3: device-proof failures are ``INVALID_REQUEST`` + ``DEVICE_AUTH_*`` (not NOT_PAIRED), 1008."""

    @inlineCallbacks
    def assertDeviceFailure(self, params, message, reason_code, detail_code, client):
        response, code, reason = yield connect_expecting_close(client, params)
        self.assertHandshakeError(response, "INVALID_REQUEST", message, {"code": detail_code, "reason": reason_code})
        self.assertEqual((code, reason), (1008, message))

    @inlineCallbacks
    def test_signature_from_another_key(self):
        client = yield open_client(self, self.running.url)
        params = signed_params(client, device=DeviceKeyPair.generate())
        impostor = signed_params(client, device=DeviceKeyPair.generate())
        params["device"]["signature"] = impostor["device"]["signature"]
        yield self.assertDeviceFailure(
            params, "device signature invalid", "device-signature", "DEVICE_AUTH_SIGNATURE_INVALID", client
        )

    @inlineCallbacks
    def test_signature_over_different_scopes(self):
        """The signature binds the requested scopes: widening them after signing breaks it."""
        client = yield open_client(self, self.running.url)
        params = signed_params(client, scopes=["operator.read"], device=DeviceKeyPair.generate())
        params["scopes"] = ["operator.read", "operator.admin"]
        yield self.assertDeviceFailure(
            params, "device signature invalid", "device-signature", "DEVICE_AUTH_SIGNATURE_INVALID", client
        )

    @inlineCallbacks
    def test_stale_nonce(self):
        """A correctly signed connect for another challenge's nonce is refused."""
        client = yield open_client(self, self.running.url)
        params = signed_params(client, nonce="00000000-0000-0000-0000-000000000000", device=DeviceKeyPair.generate())
        yield self.assertDeviceFailure(
            params, "device nonce mismatch", "device-nonce-mismatch", "DEVICE_AUTH_NONCE_MISMATCH", client
        )

    @inlineCallbacks
    def test_signed_at_ten_minutes_old(self):
        client = yield open_client(self, self.running.url)
        signed_at = client.challenge["payload"]["ts"] - 10 * 60 * 1000
        params = signed_params(client, signed_at_ms=signed_at, device=DeviceKeyPair.generate())
        yield self.assertDeviceFailure(
            params, "device signature expired", "device-signature-stale", "DEVICE_AUTH_SIGNATURE_EXPIRED", client
        )

    @inlineCallbacks
    def test_signed_at_in_the_future_beyond_skew(self):
        """The skew window is absolute: a clock 10 minutes ahead is as bad as one behind."""
        client = yield open_client(self, self.running.url)
        signed_at = client.challenge["payload"]["ts"] + 10 * 60 * 1000
        params = signed_params(client, signed_at_ms=signed_at, device=DeviceKeyPair.generate())
        yield self.assertDeviceFailure(
            params, "device signature expired", "device-signature-stale", "DEVICE_AUTH_SIGNATURE_EXPIRED", client
        )

    @inlineCallbacks
    def test_device_id_mismatch(self):
        """``device.id`` must be sha256 of the presented key."""
        client = yield open_client(self, self.running.url)
        params = signed_params(client, device=DeviceKeyPair.generate())
        params["device"]["id"] = DeviceKeyPair.generate().device_id
        yield self.assertDeviceFailure(
            params, "device identity mismatch", "device-id-mismatch", "DEVICE_AUTH_DEVICE_ID_MISMATCH", client
        )

    @inlineCallbacks
    def test_blank_nonce(self):
        """A whitespace-only nonce counts as missing."""
        client = yield open_client(self, self.running.url)
        params = signed_params(client, nonce="   ", device=DeviceKeyPair.generate())
        yield self.assertDeviceFailure(
            params, "device nonce required", "device-nonce-missing", "DEVICE_AUTH_NONCE_REQUIRED", client
        )

    @inlineCallbacks
    def test_garbage_public_key(self):
        """An unreadable key derives no device id, so it reports as an id mismatch.

        As in the reference (``deriveDeviceIdFromPublicKey`` -> null happens before the key is
        normalised), so ``DEVICE_AUTH_PUBLIC_KEY_INVALID`` is not what a garbage key produces.
        """
        client = yield open_client(self, self.running.url)
        params = signed_params(client, device=DeviceKeyPair.generate())
        params["device"]["publicKey"] = "!!! not a key !!!"
        yield self.assertDeviceFailure(
            params, "device identity mismatch", "device-id-mismatch", "DEVICE_AUTH_DEVICE_ID_MISMATCH", client
        )

    @inlineCallbacks
    def test_public_key_of_wrong_length(self):
        """Valid base64 that is not 32 bytes is not an Ed25519 key either."""
        client = yield open_client(self, self.running.url)
        params = signed_params(client, device=DeviceKeyPair.generate())
        params["device"]["publicKey"] = "AAAA"
        yield self.assertDeviceFailure(
            params, "device identity mismatch", "device-id-mismatch", "DEVICE_AUTH_DEVICE_ID_MISMATCH", client
        )


class DeviceIdentityRequiredTests(HandshakeTestCase):
    """§3.5: who may connect without ``device``, and what they get."""

    @inlineCallbacks
    def assertIdentityRequired(self, params):
        client = yield open_client(self, self.running.url)
        response, code, reason = yield connect_expecting_close(client, params)
        self.assertHandshakeError(response, "NOT_PAIRED", "device identity required", {"code": "DEVICE_IDENTITY_REQUIRED"})
        self.assertEqual((code, reason), (1008, "device identity required"))

    def test_node_without_device(self):
        """Nodes always need a device identity, even with the right shared token."""
        return self.assertIdentityRequired(connect_params(role="node", scopes=[], client=NODE_CLIENT))

    def test_no_token_and_no_device(self):
        """Nothing to authenticate with at all: NOT_PAIRED, not an AUTH_* failure."""
        return self.assertIdentityRequired(connect_params(token=None))


# -- successful connects ---------------------------------------------------------------------


class DevicelessOperatorTests(HandshakeTestCase):
    """§3.5 step 5 / §13 fact 12: token-only operators connect but lose their scopes…"""

    def assertHello(self, response, scopes, method="token"):
        self.assertTrue(response["ok"], response)
        hello = response["payload"]
        self.assertEqual(hello["type"], "hello-ok")
        self.assertEqual(hello["protocol"], 4)
        self.assertEqual(hello["auth"]["role"], "operator")
        self.assertEqual(hello["auth"]["method"], method)
        self.assertEqual(hello["auth"]["scopes"], scopes)
        self.assertNotIn("deviceToken", hello["auth"])

    @inlineCallbacks
    def test_tui_without_device_gets_no_scopes(self):
        client, response = yield connect(self, self.running.url, client=TUI_CLIENT)
        self.assertHello(response, [])
        yield client.close()

    @inlineCallbacks
    def test_cli_behind_a_proxy_gets_no_scopes(self):
        """A forwarded-for header means the cli is not direct-local, so no exception applies."""
        client, response = yield connect(self, self.running.url, headers={"X-Forwarded-For": "203.0.113.9"})
        self.assertHello(response, [])
        yield client.close()

    @inlineCallbacks
    def test_cli_with_a_non_cli_mode_gets_no_scopes(self):
        """The exception is the pair (id cli, mode cli), not the id alone."""
        client, response = yield connect(self, self.running.url, client=dict(CLI_CLIENT, mode="ui"))
        self.assertHello(response, [])
        yield client.close()

    @inlineCallbacks
    def test_local_cli_keeps_its_scopes(self):
        """…except the direct-local cli, which keeps exactly what it asked for."""
        client, response = yield connect(self, self.running.url)
        self.assertHello(response, OPERATOR_SCOPES)
        yield client.close()

    @inlineCallbacks
    def test_local_backend_keeps_its_scopes(self):
        """The local gateway-client backend self-connect is the other exception."""
        backend = {"id": "gateway-client", "version": "1.0.0", "platform": "linux", "mode": "backend"}
        client, response = yield connect(self, self.running.url, client=backend, scopes=["operator.read"])
        self.assertHello(response, ["operator.read"])
        yield client.close()

    @inlineCallbacks
    def test_scopeless_operator_can_still_call_health(self):
        """``health`` bypasses scope checks, so a scopeless socket is still useful."""
        client, response = yield connect(self, self.running.url, client=TUI_CLIENT)
        self.assertEqual(response["payload"]["auth"]["scopes"], [])
        health = yield client.request("health", {})
        self.assertTrue(health["ok"], health)
        yield client.close()


class DeviceConnectTests(HandshakeTestCase):
    """Signed connects: v3 and legacy v2 payloads, the v3 node window, probes."""

    @inlineCallbacks
    def test_v3_signature_accepted(self):
        key = DeviceKeyPair.generate()
        client, response = yield connect(self, self.running.url, device=key)
        self.assertTrue(response["ok"], response)
        auth = response["payload"]["auth"]
        self.assertEqual(auth["method"], "token")
        self.assertEqual(auth["scopes"], OPERATOR_SCOPES)
        self.assertIsInstance(auth["deviceToken"], str)
        yield client.close()

    @inlineCallbacks
    def test_v2_signature_accepted(self):
        """Servers try v3 then v2; older clients still sign the 9-field v2 payload."""
        key = DeviceKeyPair.generate()
        client, response = yield connect(self, self.running.url, device=key, signature_version="v2")
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["protocol"], 4)
        self.assertEqual(response["payload"]["auth"]["scopes"], OPERATOR_SCOPES)
        yield client.close()

    @inlineCallbacks
    def test_v3_node_accepted_with_protocol_3(self):
        """role node + client.mode node may speak protocol 3 (the N-1 window)."""
        key = DeviceKeyPair.generate()
        client, response = yield connect(
            self, self.running.url, device=key, role="node", scopes=[], client=NODE_CLIENT, min_protocol=3, max_protocol=3
        )
        self.assertTrue(response["ok"], response)
        hello = response["payload"]
        self.assertEqual(hello["protocol"], 3)
        self.assertEqual(hello["auth"]["role"], "node")
        yield client.close()

    @inlineCallbacks
    def test_node_window_3_to_4_gets_4(self):
        """A node that also speaks 4 gets the current protocol."""
        key = DeviceKeyPair.generate()
        client, response = yield connect(
            self, self.running.url, device=key, role="node", scopes=[], client=NODE_CLIENT, min_protocol=3, max_protocol=4
        )
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["protocol"], 4)
        yield client.close()

    @inlineCallbacks
    def test_probe_with_protocol_3_accepted(self):
        """Restart probes (client.mode probe) may still speak 3."""
        client, response = yield connect(
            self, self.running.url, client=PROBE_CLIENT, scopes=[], min_protocol=3, max_protocol=3
        )
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["type"], "hello-ok")
        yield client.close()

    @inlineCallbacks
    def test_padded_standard_base64_public_key_accepted(self):
        """The server normalises base64 alphabets and padding on the public key (§3.1)."""
        key = DeviceKeyPair.generate()
        client = yield open_client(self, self.running.url)
        params = signed_params(client, device=key)
        params["device"]["publicKey"] = base64.b64encode(key.raw_public_key).decode("ascii")
        client.send({"type": "req", "id": "c1", "method": "connect", "params": params})
        response = yield client.next_frame()
        self.assertTrue(response["ok"], response)
        yield client.close()


class SecondConnectTests(HandshakeTestCase):
    """Golden "second connect after hello-ok": an error res, and the socket stays open."""

    @inlineCallbacks
    def test_second_connect_is_refused_but_socket_stays_open(self):
        key = DeviceKeyPair.generate()
        client, response = yield connect(self, self.running.url, device=key)
        self.assertTrue(response["ok"], response)
        again = yield client.request("connect", signed_params(client, device=key), request_id="b9")
        self.assertEqual(
            again,
            {
                "type": "res",
                "id": "b9",
                "ok": False,
                "error": {"code": "INVALID_REQUEST", "message": "connect is only valid as the first request"},
            },
        )
        self.assertFalse(client.closed.called)
        health = yield client.request("health", {})
        self.assertTrue(health["ok"], health)
        yield client.close()


class AuthModeTests(TestCase):
    """§4.1: password and none modes; either wire field carries the secret."""

    @inlineCallbacks
    def test_password_mode_accepts_auth_password(self):
        running = yield start_gateway(self, auth=AuthSettings(mode="password", password="s3cret"))
        client, response = yield connect(self, running.url, auth={"password": "s3cret"})
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["auth"]["method"], "password")
        self.assertEqual(response["payload"]["auth"]["scopes"], OPERATOR_SCOPES)
        yield client.close()

    @inlineCallbacks
    def test_password_mode_accepts_the_secret_in_auth_token(self):
        running = yield start_gateway(self, auth=AuthSettings(mode="password", password="s3cret"))
        client, response = yield connect(self, running.url, auth={"token": "s3cret"})
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["auth"]["method"], "password")
        yield client.close()

    @inlineCallbacks
    def test_token_mode_accepts_the_secret_in_auth_password(self):
        running = yield start_gateway(self)
        client, response = yield connect(self, running.url, auth={"password": TOKEN})
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["auth"]["method"], "token")
        yield client.close()

    @inlineCallbacks
    def test_password_mode_wrong_password(self):
        running = yield start_gateway(self, auth=AuthSettings(mode="password", password="s3cret"))
        client = yield open_client(self, running.url)
        response, code, reason = yield connect_expecting_close(client, connect_params(auth={"password": "nope"}))
        message = "unauthorized: gateway password mismatch (use this gateway's gateway.auth.password)"
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(response["error"]["message"], message)
        self.assertEqual(response["error"]["details"]["code"], "AUTH_PASSWORD_MISMATCH")
        self.assertEqual(response["error"]["details"]["recommendedNextStep"], "update_auth_credentials")
        self.assertEqual((code, reason), (1008, message))

    @inlineCallbacks
    def test_none_mode_needs_no_secret(self):
        running = yield start_gateway(self, auth=AuthSettings(mode="none"))
        client, response = yield connect(self, running.url, token=None)
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["auth"]["method"], "none")
        self.assertEqual(response["payload"]["auth"]["scopes"], OPERATOR_SCOPES)
        yield client.close()

    @inlineCallbacks
    def test_none_mode_with_device(self):
        running = yield start_gateway(self, auth=AuthSettings(mode="none"))
        client, response = yield connect(self, running.url, token=None, device=DeviceKeyPair.generate())
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["auth"]["method"], "none")
        self.assertIn("deviceToken", response["payload"]["auth"])
        yield client.close()


class DeviceTokenTests(HandshakeTestCase):
    """§3.7: reconnecting with the device token from hello-ok instead of the shared secret."""

    @inlineCallbacks
    def pair(self, key, scopes=None):
        """Connect once with the shared token (silently paired on loopback); return the device token."""
        client, response = yield connect(self, self.running.url, device=key, scopes=scopes)
        self.assertTrue(response["ok"], response)
        yield client.close()
        return response["payload"]["auth"]["deviceToken"]

    @inlineCallbacks
    def test_reconnect_with_device_token_only(self):
        key = DeviceKeyPair.generate()
        device_token = yield self.pair(key)
        client, response = yield connect(self, self.running.url, device=key, auth={"deviceToken": device_token})
        self.assertTrue(response["ok"], response)
        auth = response["payload"]["auth"]
        self.assertEqual(auth["method"], "device-token")
        self.assertEqual(auth["scopes"], OPERATOR_SCOPES)
        self.assertEqual(auth["deviceToken"], device_token)
        yield client.close()

    @inlineCallbacks
    def test_device_token_in_auth_token_field(self):
        """With a device present, ``auth.token`` is tried as a device token when the shared secret fails."""
        key = DeviceKeyPair.generate()
        device_token = yield self.pair(key)
        client, response = yield connect(self, self.running.url, device=key, token=device_token)
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["auth"]["method"], "device-token")
        yield client.close()

    @inlineCallbacks
    def test_wrong_device_token_only(self):
        key = DeviceKeyPair.generate()
        yield self.pair(key)
        client = yield open_client(self, self.running.url)
        params = signed_params(client, device=key, auth={"deviceToken": "not-the-token"})
        response, code, reason = yield connect_expecting_close(client, params)
        message = "unauthorized: device token mismatch (rotate/reissue device token)"
        details = {
            "code": "AUTH_DEVICE_TOKEN_MISMATCH",
            "authReason": "device_token_mismatch",
            "canRetryWithDeviceToken": False,
            "recommendedNextStep": "update_auth_credentials",
        }
        self.assertHandshakeError(response, "INVALID_REQUEST", message, details)
        self.assertEqual((code, reason), (1008, message))

    @inlineCallbacks
    def test_device_token_asking_for_more_scopes(self):
        """A valid token does not stretch beyond the scopes it was granted."""
        key = DeviceKeyPair.generate()
        device_token = yield self.pair(key, scopes=["operator.read"])
        client = yield open_client(self, self.running.url)
        params = signed_params(
            client, device=key, scopes=["operator.read", "operator.admin"], auth={"deviceToken": device_token}
        )
        response, code, reason = yield connect_expecting_close(client, params)
        message = "unauthorized: device token scope mismatch (re-pair or approve scope upgrade)"
        details = {
            "code": "AUTH_SCOPE_MISMATCH",
            "authReason": "scope_mismatch",
            "canRetryWithDeviceToken": False,
            "recommendedNextStep": "review_auth_configuration",
        }
        self.assertHandshakeError(response, "INVALID_REQUEST", message, details)
        self.assertEqual((code, reason), (1008, message))

    @inlineCallbacks
    def test_device_token_of_another_device(self):
        """Tokens are bound to (device, role): another device's token is a mismatch."""
        device_token = yield self.pair(DeviceKeyPair.generate())
        other = DeviceKeyPair.generate()
        yield self.pair(other)
        client = yield open_client(self, self.running.url)
        params = signed_params(client, device=other, auth={"deviceToken": device_token})
        response, code, reason = yield connect_expecting_close(client, params)
        self.assertEqual(response["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH")
        self.assertEqual(code, 1008)


# -- pre-auth resource limits and timers -----------------------------------------------------


class PreauthLimitTests(HandshakeTestCase):
    """§1.2 / §1.4: what an unauthenticated socket may cost the server."""

    @inlineCallbacks
    def test_oversized_first_frame_closes_1009(self):
        """Anything above 64 KiB before hello-ok is cut off without a res."""
        client = yield open_client(self, self.running.url)
        params = connect_params()
        params["userAgent"] = "x" * (MAX_PREAUTH_PAYLOAD_BYTES + 1)
        client.send({"type": "req", "id": "c1", "method": "connect", "params": params})
        code, reason = yield closed_with(client)
        self.assertEqual((code, reason), (1009, "preauth payload too large"))
        self.assertNoResponse(client)

    @inlineCallbacks
    def test_first_frame_just_under_the_limit_is_processed(self):
        """A frame of exactly 64 KiB is still allowed (the limit is "greater than")."""
        client = yield open_client(self, self.running.url)
        frame = {"type": "req", "id": "c1", "method": "connect", "params": connect_params(userAgent="")}
        overhead = len(json.dumps(frame).encode("utf-8"))
        frame["params"]["userAgent"] = "x" * (MAX_PREAUTH_PAYLOAD_BYTES - overhead)
        data = json.dumps(frame).encode("utf-8")
        self.assertEqual(len(data), MAX_PREAUTH_PAYLOAD_BYTES)
        client.send_raw(data)
        response = yield client.next_frame()
        self.assertTrue(response["ok"], response)
        yield client.close()


class PreauthSocketLimitTests(TestCase):
    """Golden "captured separately": too many unauthenticated sockets from one IP → HTTP 503."""

    @inlineCallbacks
    def raw_upgrade(self, running):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", running.port.getHost().port)
        protocol = _RawHttp(upgrade_request(running.port.getHost().port))
        yield connectProtocol(endpoint, protocol)
        data = yield protocol.done
        return data

    @inlineCallbacks
    def test_upgrade_refused_with_503_beyond_the_limit(self):
        running = yield start_gateway(self, max_preauth_per_ip=2)
        first = yield open_client(self, running.url)
        second = yield open_client(self, running.url)
        self.assertEqual(running.gateway.preauth.count("127.0.0.1"), 2)
        data = yield self.raw_upgrade(running)
        self.assertTrue(data.startswith(b"HTTP/1.1 503"), data[:200])
        self.assertNotIn(b"connect.challenge", data)
        self.assertEqual(running.gateway.preauth.count("127.0.0.1"), 2)
        yield first.close()
        yield second.close()

    @inlineCallbacks
    def test_admitted_socket_frees_its_slot(self):
        """A socket that completed the handshake no longer counts as unauthenticated."""
        running = yield start_gateway(self, max_preauth_per_ip=2)
        first = yield open_client(self, running.url)
        admitted, response = yield connect(self, running.url)
        self.assertTrue(response["ok"], response)
        self.assertEqual(running.gateway.preauth.count("127.0.0.1"), 1)
        third = yield open_client(self, running.url)
        self.assertEqual(third.challenge["event"], "connect.challenge")
        yield first.close()
        yield admitted.close()
        yield third.close()

    def test_default_limit_is_32(self):
        self.assertEqual(GatewaySettings().max_preauth_per_ip, 32)


class HandshakeTimeoutTests(TestCase):
    """§1.3: a socket that never connects is closed 1000 '' after 15 s (gateway clock)."""

    @inlineCallbacks
    def test_silent_client_closed_after_15_seconds(self):
        clock = Clock()
        running = yield start_gateway(self, clock=clock)
        client = yield open_client(self, running.url)
        [server] = running.factory.connections
        clock.advance(14.9)
        self.assertEqual(server.state, server.STATE_OPEN)
        clock.advance(0.1)
        self.assertNotEqual(server.state, server.STATE_OPEN)
        code, reason = yield closed_with(client)
        self.assertEqual((code, reason), (1000, ""))
        self.assertNoResponse(client)
        self.assertEqual(running.gateway.preauth.count("127.0.0.1"), 0)

    @inlineCallbacks
    def test_admitted_client_is_not_timed_out(self):
        """hello-ok cancels the handshake timer."""
        clock = Clock()
        running = yield start_gateway(self, clock=clock)
        client, response = yield connect(self, running.url, device=DeviceKeyPair.generate())
        self.assertTrue(response["ok"], response)
        clock.advance(16)
        health = yield client.request("health", {})
        self.assertTrue(health["ok"], health)
        self.assertFalse(client.closed.called)
        yield client.close()

    def assertNoResponse(self, client):
        self.assertEqual(list(client.frames), [])


# -- rate limiting at the handshake ----------------------------------------------------------


class HandshakeRateLimitTests(SynchronousTestCase):
    """§4.3 through :meth:`Handshake.admit`: a locked-out remote gets ``AUTH_RATE_LIMITED``.

    Loopback is exempt, so the remote address has to be faked; that is only possible below the
    transport, with a hand-made :class:`ConnectionInfo`.
    """

    REMOTE = "203.0.113.5"

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.gateway = make_gateway(self, clock=self.clock)

    def admit(self, params, remote_ip=REMOTE, nonce="nonce-1"):
        info = ConnectionInfo(conn_id="conn-1", nonce=nonce, remote_ip=remote_ip, headers={"host": "gateway.example"})
        return self.gateway.handshake.admit(info, params)

    def fail_auth(self, times, remote_ip=REMOTE):
        for _ in range(times):
            failure = self.failureResultOf(self.admit(connect_params(token="wrong"), remote_ip), GatewayError)
            self.assertEqual(failure.value.details["code"], "AUTH_TOKEN_MISMATCH")

    def assertRateLimited(self, d, retry_after_ms):
        error = self.failureResultOf(d, GatewayError).value
        self.assertEqual(error.to_shape(), rate_limited_error(retry_after_ms))
        self.assertEqual(error.close_code, 1008)

    def test_good_token_from_remote_is_admitted(self):
        admission = self.successResultOf(self.admit(connect_params(client=TUI_CLIENT)))
        self.assertEqual(admission.auth_method, "token")
        self.assertEqual(admission.scopes, ())

    def test_ten_failures_lock_out_even_the_right_token(self):
        self.fail_auth(10)
        self.assertRateLimited(self.admit(connect_params()), 300_000)

    def test_nine_failures_do_not(self):
        self.fail_auth(9)
        self.successResultOf(self.admit(connect_params()))

    def test_retry_after_counts_down_and_lock_expires(self):
        self.fail_auth(10)
        self.clock.advance(120)
        self.assertRateLimited(self.admit(connect_params()), 180_000)
        self.clock.advance(180)
        self.successResultOf(self.admit(connect_params()))

    def test_lockout_checked_before_device_proof(self):
        """A locked-out remote is refused before any signature work is done."""
        self.fail_auth(10)
        key = DeviceKeyPair.generate()
        params = connect_params(device=key, nonce="nonce-1", signed_at_ms=int(self.clock.seconds() * 1000))
        self.assertRateLimited(self.admit(params), 300_000)

    def test_device_token_failures_count(self):
        """Wrong device tokens are failed authentications too."""
        key = DeviceKeyPair.generate()
        now_ms = int(self.clock.seconds() * 1000)
        for _ in range(10):
            params = connect_params(device=key, nonce="nonce-1", signed_at_ms=now_ms, auth={"deviceToken": "bogus"})
            error = self.failureResultOf(self.admit(params), GatewayError).value
            self.assertEqual(error.details["code"], "AUTH_DEVICE_TOKEN_MISMATCH")
        self.assertRateLimited(self.admit(connect_params()), 300_000)

    def test_success_resets_the_count(self):
        self.fail_auth(9)
        self.successResultOf(self.admit(connect_params()))
        self.fail_auth(9)
        self.successResultOf(self.admit(connect_params()))

    def test_other_remote_is_unaffected(self):
        self.fail_auth(10)
        self.successResultOf(self.admit(connect_params(), remote_ip="198.51.100.7"))

    def test_loopback_is_never_locked(self):
        self.fail_auth(20, remote_ip="127.0.0.1")
        self.successResultOf(self.admit(connect_params(), remote_ip="127.0.0.1"))

    def test_browser_origin_on_loopback_is_locked(self):
        """A web page can script ws://127.0.0.1: guesses carrying an Origin count even on loopback."""
        headers = {"host": "127.0.0.1:18789", "origin": "http://127.0.0.1:18789"}

        def browser(params):
            info = ConnectionInfo(conn_id="conn-1", nonce="nonce-1", remote_ip="127.0.0.1", headers=headers)
            return self.gateway.handshake.admit(info, params)

        for _ in range(10):
            error = self.failureResultOf(browser(connect_params(token="wrong")), GatewayError).value
            self.assertEqual(error.details["code"], "AUTH_TOKEN_MISMATCH")
        self.assertRateLimited(browser(connect_params()), 300_000)
        # The local CLI (no Origin) is not locked out by what a browser page did.
        self.successResultOf(self.admit(connect_params(), remote_ip="127.0.0.1"))


# -- close reason truncation -----------------------------------------------------------------


class TruncateReasonTests(SynchronousTestCase):
    """§1.2: close reasons are capped at 120 UTF-8 bytes, cut on a character boundary."""

    def test_short_reason_unchanged(self):
        self.assertEqual(truncate_reason("protocol mismatch"), "protocol mismatch")

    def test_exactly_120_bytes_unchanged(self):
        reason = "a" * 120
        self.assertEqual(truncate_reason(reason), reason)

    def test_ascii_cut_at_120(self):
        self.assertEqual(truncate_reason("a" * 200), "a" * 120)

    def test_two_byte_chars(self):
        """'é' is 2 bytes: 60 of them fill 120 bytes exactly."""
        self.assertEqual(truncate_reason("é" * 100), "é" * 60)

    def test_partial_multibyte_char_is_dropped(self):
        """'€' is 3 bytes; with a 1-byte prefix only 39 fit (118 bytes), never half a character."""
        result = truncate_reason("x" + "€" * 50)
        self.assertEqual(result, "x" + "€" * 39)
        self.assertEqual(len(result.encode("utf-8")), 118)

    def test_four_byte_chars(self):
        """Emoji are 4 bytes: 30 fit exactly; one extra ASCII byte pushes the last one out."""
        self.assertEqual(truncate_reason("😀" * 40), "😀" * 30)
        self.assertEqual(truncate_reason("ab" + "😀" * 40), "ab" + "😀" * 29)

    def test_result_is_always_valid_and_within_limit(self):
        for prefix in range(4):
            reason = "p" * prefix + "é€😀" * 40
            result = truncate_reason(reason)
            encoded = result.encode("utf-8")
            self.assertLessEqual(len(encoded), CLOSE_REASON_MAX_BYTES)
            self.assertGreater(len(encoded), CLOSE_REASON_MAX_BYTES - 4)
            self.assertTrue(reason.startswith(result))
