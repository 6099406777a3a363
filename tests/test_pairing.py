"""Device pairing and device tokens (protocol §3.4, §3.6, §3.7, §9.6).

Most of this is observable only end to end (who gets which event, which socket is closed with what),
so those tests run a real gateway on a loopback port. A connection is made *non-local* by sending an
``X-Forwarded-For`` header: the gateway then treats it as proxied, i.e. remote, and will not pair it
silently. Expiry of pending requests is clock-driven, so it is tested on an in-memory gateway with a
``task.Clock`` instead.
"""
from __future__ import annotations

import os

from twisted.internet.defer import inlineCallbacks, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.protocol.errors import GatewayError
from openclaw.security.device_identity import DeviceKeyPair, VerifiedDevice
from openclaw.services.pairing import PairingRequestContext
from openclaw.stores.devices import PairedDevice

from .support.gateway import make_gateway, start_gateway
from .support.wsclient import CLI_CLIENT, OPERATOR_SCOPES, connect

REMOTE = {"X-Forwarded-For": "203.0.113.7"}
NODE_CLIENT = {"id": "node-host", "version": "1.0.0", "platform": "linux", "mode": "node"}
PAIRING_REQUIRED_KEYS = {
    "code",
    "reason",
    "requestId",
    "deviceId",
    "requestedRole",
    "requestedScopes",
    "recommendedNextStep",
    "retryable",
    "pauseReconnect",
}


def _event(name):
    return lambda frame: isinstance(frame, dict) and frame.get("type") == "event" and frame.get("event") == name


@inlineCallbacks
def request_collecting(client, method, params=None):
    """Send a request; return its response and every other frame that arrived before it.

    Events are delivered in order on the socket, so a round trip proves that anything broadcast
    before the request was sent has already arrived.
    """
    request_id = f"{method}-{id(params)}-{len(client.frames)}"
    frame = {"type": "req", "id": request_id, "method": method}
    if params is not None:
        frame["params"] = params
    client.send(frame)
    seen = []
    while True:
        received = yield client.next_frame()
        if isinstance(received, dict) and received.get("type") == "res" and received.get("id") == request_id:
            return (received, seen)
        seen.append(received)


class PairingTestBase(TestCase):
    """Shared helpers: an operator observer, device connects, and assertions on rejections."""

    timeout = 15  # a missed frame should fail the test quickly, not after trial's 120 s

    @inlineCallbacks
    def setUp(self):
        self.running = yield start_gateway(self)
        self.url = self.running.url
        self.store = self.running.gateway.pairing.store

    @inlineCallbacks
    def operator(self, scopes=None):
        """A device-less local CLI operator: the local-CLI exception keeps its requested scopes."""
        client, response = yield connect(self, self.url, scopes=list(OPERATOR_SCOPES if scopes is None else scopes))
        self.assertTrue(response["ok"], response)
        return client

    @inlineCallbacks
    def device_connect(self, key, *, remote=False, **kwargs):
        client, response = yield connect(self, self.url, device=key, headers=REMOTE if remote else None, **kwargs)
        return (client, response)

    @inlineCallbacks
    def paired_locally(self, key, **kwargs):
        """Connect from loopback (silently paired), keep nothing open, return the issued token."""
        client, response = yield self.device_connect(key, **kwargs)
        self.assertTrue(response["ok"], response)
        yield client.close()
        return response["payload"]["auth"]["deviceToken"]

    @inlineCallbacks
    def assert_not_paired(self, client, response, key, reason="not-paired"):
        self.assertFalse(response["ok"], response)
        error = response["error"]
        self.assertEqual(error["code"], "NOT_PAIRED")
        details = error["details"]
        self.assertTrue(PAIRING_REQUIRED_KEYS <= set(details), details)
        self.assertEqual(details["code"], "PAIRING_REQUIRED")
        self.assertEqual(details["reason"], reason)
        self.assertEqual(details["deviceId"], key.device_id)
        self.assertEqual(details["recommendedNextStep"], "wait_then_retry")
        self.assertIs(details["retryable"], True)
        self.assertIs(details["pauseReconnect"], False)
        code, close_reason = yield client.closed
        self.assertEqual(code, 1008)
        expected = f"{error['message']} (requestId: {details['requestId']})"
        # close reasons are capped at 120 bytes, which cuts the longer messages
        self.assertEqual(close_reason, expected.encode("utf-8")[:120].decode("utf-8", "ignore"))
        return details


class SilentLocalPairingTests(PairingTestBase):
    """A device on loopback with no proxy in between is trusted and paired without asking anyone."""

    @inlineCallbacks
    def test_loopback_device_is_paired_and_gets_token(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        client, response = yield self.device_connect(key)
        self.assertTrue(response["ok"], response)
        auth = response["payload"]["auth"]
        self.assertEqual(len(auth["deviceToken"]), 43)
        self.assertIsInstance(auth["issuedAtMs"], int)
        self.assertEqual(auth["role"], "operator")
        resolved = yield observer.next_matching(_event("device.pair.resolved"))
        payload = resolved["payload"]
        self.assertEqual(payload["decision"], "approved")
        self.assertEqual(payload["deviceId"], key.device_id)
        self.assertTrue(payload["requestId"])
        self.assertIsInstance(payload["ts"], int)
        paired = self.store.paired(key.device_id)
        self.assertEqual(paired.public_key, key.public_key)
        self.assertEqual(paired.roles, ["operator"])
        self.assertEqual(paired.scopes, OPERATOR_SCOPES)
        self.assertEqual(self.store.all_pending(), [])

    @inlineCallbacks
    def test_reconnect_reuses_the_same_token(self):
        key = DeviceKeyPair.generate()
        first = yield self.paired_locally(key)
        second = yield self.paired_locally(key)
        self.assertEqual(first, second)

    @inlineCallbacks
    def test_paired_device_reconnects_from_remote_without_approval(self):
        key = DeviceKeyPair.generate()
        yield self.paired_locally(key)
        client, response = yield self.device_connect(key, remote=True)
        self.assertTrue(response["ok"], response)

    @inlineCallbacks
    def test_auto_approve_local_disabled(self):
        running = yield start_gateway(self, auto_approve_local=False)
        self.url = running.url
        key = DeviceKeyPair.generate()
        client, response = yield self.device_connect(key)
        yield self.assert_not_paired(client, response, key)


class PairingRequiredTests(PairingTestBase):
    """A non-local unknown device is refused with NOT_PAIRED and becomes a pending request."""

    @inlineCallbacks
    def test_not_paired_response_close_and_events(self):
        pairing_observer = yield self.operator()
        read_only = yield self.operator(["operator.read"])
        key = DeviceKeyPair.generate()
        client, response = yield self.device_connect(key, remote=True, scopes=["operator.read", "operator.write"])
        details = yield self.assert_not_paired(client, response, key)
        self.assertEqual(response["error"]["message"], "pairing required: device is not approved yet")
        self.assertEqual(details["requestedRole"], "operator")
        self.assertEqual(details["requestedScopes"], ["operator.read", "operator.write"])
        self.assertNotIn("approvedScopes", details)
        self.assertIsNone(self.store.paired(key.device_id))

        requested = yield pairing_observer.next_matching(_event("device.pair.requested"))
        self.assertEqual(requested["payload"]["requestId"], details["requestId"])
        self.assertEqual(requested["payload"]["deviceId"], key.device_id)
        self.assertEqual(requested["payload"]["publicKey"], key.public_key)
        self.assertEqual(requested["payload"]["scopes"], ["operator.read", "operator.write"])

        _, seen = yield request_collecting(read_only, "health", {})
        self.assertEqual([f for f in seen if f.get("event", "").startswith("device.pair")], [])

    @inlineCallbacks
    def test_pending_request_listed(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        client, response = yield self.device_connect(key, remote=True)
        details = yield self.assert_not_paired(client, response, key)
        listed = yield observer.request("device.pair.list", {})
        self.assertTrue(listed["ok"], listed)
        pending = listed["payload"]["pending"]
        self.assertEqual([p["requestId"] for p in pending], [details["requestId"]])
        self.assertEqual(pending[0]["deviceId"], key.device_id)
        self.assertEqual(pending[0]["role"], "operator")
        self.assertEqual(listed["payload"]["paired"], [])

    @inlineCallbacks
    def test_retry_refreshes_the_same_request(self):
        key = DeviceKeyPair.generate()
        client, response = yield self.device_connect(key, remote=True)
        first = yield self.assert_not_paired(client, response, key)
        client, response = yield self.device_connect(key, remote=True)
        second = yield self.assert_not_paired(client, response, key)
        self.assertEqual(first["requestId"], second["requestId"])
        self.assertEqual(len(self.store.all_pending()), 1)

    @inlineCallbacks
    def test_approve_then_connect(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        client, response = yield self.device_connect(key, remote=True)
        details = yield self.assert_not_paired(client, response, key)
        approved, seen = yield request_collecting(observer, "device.pair.approve", {"requestId": details["requestId"]})
        self.assertTrue(approved["ok"], approved)
        self.assertEqual(approved["payload"]["requestId"], details["requestId"])
        (resolved,) = [f for f in seen if _event("device.pair.resolved")(f)]
        self.assertEqual(resolved["payload"]["decision"], "approved")
        self.assertEqual(resolved["payload"]["requestId"], details["requestId"])
        self.assertEqual(resolved["payload"]["deviceId"], key.device_id)

        client, response = yield self.device_connect(key, remote=True)
        self.assertTrue(response["ok"], response)
        self.assertEqual(len(response["payload"]["auth"]["deviceToken"]), 43)
        listed = yield observer.request("device.pair.list", {})
        self.assertEqual(listed["payload"]["pending"], [])
        self.assertEqual([d["deviceId"] for d in listed["payload"]["paired"]], [key.device_id])

        again = yield observer.request("device.pair.approve", {"requestId": details["requestId"]})
        self.assertFalse(again["ok"])
        self.assertEqual(again["error"]["code"], "INVALID_REQUEST")

    @inlineCallbacks
    def test_reject_keeps_device_out(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        client, response = yield self.device_connect(key, remote=True)
        details = yield self.assert_not_paired(client, response, key)
        rejected, seen = yield request_collecting(observer, "device.pair.reject", {"requestId": details["requestId"]})
        self.assertTrue(rejected["ok"], rejected)
        (resolved,) = [f for f in seen if _event("device.pair.resolved")(f)]
        self.assertEqual(resolved["payload"]["decision"], "rejected")
        self.assertEqual(resolved["payload"]["requestId"], details["requestId"])
        self.assertIsNone(self.store.paired(key.device_id))

        client, response = yield self.device_connect(key, remote=True)
        retry = yield self.assert_not_paired(client, response, key)
        self.assertNotEqual(retry["requestId"], details["requestId"])

    @inlineCallbacks
    def test_pairing_methods_need_pairing_scope(self):
        reader = yield self.operator(["operator.read"])
        for method, params in (
            ("device.pair.list", {}),
            ("device.pair.approve", {"requestId": "x"}),
            ("device.pair.reject", {"requestId": "x"}),
        ):
            response = yield reader.request(method, params)
            self.assertEqual(response["error"]["code"], "FORBIDDEN", method)
            self.assertEqual(response["error"]["details"]["missingScope"], "operator.pairing")


class UpgradeTests(PairingTestBase):
    """A paired device asking for more than it was granted needs approval again, with a reason."""

    @inlineCallbacks
    def test_scope_upgrade(self):
        key = DeviceKeyPair.generate()
        yield self.paired_locally(key, scopes=["operator.read"])
        client, response = yield self.device_connect(key, remote=True, scopes=["operator.read", "operator.write"])
        details = yield self.assert_not_paired(client, response, key, reason="scope-upgrade")
        self.assertEqual(
            response["error"]["message"], "pairing required: device is asking for more scopes than currently approved"
        )
        self.assertEqual(details["approvedScopes"], ["operator.read"])
        self.assertEqual(details["approvedRoles"], ["operator"])
        self.assertEqual(details["requestedScopes"], ["operator.read", "operator.write"])

    @inlineCallbacks
    def test_implied_scopes_are_not_an_upgrade(self):
        key = DeviceKeyPair.generate()
        yield self.paired_locally(key, scopes=["operator.write"])
        client, response = yield self.device_connect(key, remote=True, scopes=["operator.read"])
        self.assertTrue(response["ok"], response)

    @inlineCallbacks
    def test_approving_scope_upgrade_merges_scopes(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        yield self.paired_locally(key, scopes=["operator.read"])
        client, response = yield self.device_connect(key, remote=True, scopes=["operator.write"])
        details = yield self.assert_not_paired(client, response, key, reason="scope-upgrade")
        approved = yield observer.request("device.pair.approve", {"requestId": details["requestId"]})
        self.assertTrue(approved["ok"], approved)
        self.assertEqual(self.store.paired(key.device_id).scopes, ["operator.read", "operator.write"])

    @inlineCallbacks
    def test_role_upgrade(self):
        key = DeviceKeyPair.generate()
        yield self.paired_locally(key, scopes=["operator.read"])
        client, response = yield self.device_connect(key, remote=True, role="node", client=NODE_CLIENT, scopes=[])
        details = yield self.assert_not_paired(client, response, key, reason="role-upgrade")
        self.assertEqual(
            response["error"]["message"],
            "pairing required: device is asking for a higher role than currently approved",
        )
        self.assertEqual(details["requestedRole"], "node")
        self.assertEqual(details["approvedRoles"], ["operator"])

    @inlineCallbacks
    def test_role_upgrade_to_node_is_never_silent(self):
        """Existing paired devices re-pairing as a non-operator role are not silently approved."""
        key = DeviceKeyPair.generate()
        yield self.paired_locally(key, scopes=["operator.read"])
        client, response = yield self.device_connect(key, role="node", client=NODE_CLIENT, scopes=[])
        yield self.assert_not_paired(client, response, key, reason="role-upgrade")

    @inlineCallbacks
    def test_metadata_upgrade(self):
        key = DeviceKeyPair.generate()
        yield self.paired_locally(key, scopes=["operator.read"])
        client, response = yield self.device_connect(
            key, remote=True, scopes=["operator.read"], client=dict(CLI_CLIENT, platform="darwin")
        )
        yield self.assert_not_paired(client, response, key, reason="metadata-upgrade")


class RemoveAndRenameTests(PairingTestBase):
    """Removing a device must cut its live sessions; renaming is an operator-side label."""

    @inlineCallbacks
    def test_remove_closes_sockets_and_broadcasts(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        device, response = yield self.device_connect(key)
        self.assertTrue(response["ok"], response)
        removed, seen = yield request_collecting(observer, "device.pair.remove", {"deviceId": key.device_id})
        self.assertTrue(removed["ok"], removed)
        self.assertEqual(removed["payload"]["deviceId"], key.device_id)
        code, reason = yield device.closed
        self.assertEqual(code, 4001)
        self.assertEqual(reason, "client invalidated: device removed")
        (resolved,) = [f for f in seen if _event("device.pair.resolved")(f) and f["payload"]["decision"] == "removed"]
        self.assertEqual(resolved["payload"]["requestId"], "")
        self.assertEqual(resolved["payload"]["deviceId"], key.device_id)
        self.assertIsNone(self.store.paired(key.device_id))
        self.assertEqual(self.store.tokens_for(key.device_id), [])
        # the observer's own socket is untouched
        health = yield observer.request("health", {})
        self.assertTrue(health["ok"])

        client, response = yield self.device_connect(key, remote=True)
        yield self.assert_not_paired(client, response, key)

    @inlineCallbacks
    def test_remove_unknown_device(self):
        observer = yield self.operator()
        response = yield observer.request("device.pair.remove", {"deviceId": "0" * 64})
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")

    @inlineCallbacks
    def test_rename_sets_operator_label(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        yield self.paired_locally(key)
        renamed = yield observer.request("device.pair.rename", {"deviceId": key.device_id, "label": "Build box"})
        self.assertTrue(renamed["ok"], renamed)
        self.assertEqual(renamed["payload"], {"deviceId": key.device_id, "label": "Build box"})
        listed = yield observer.request("device.pair.list", {})
        (device,) = listed["payload"]["paired"]
        self.assertEqual(device["operatorLabel"], "Build box")

    @inlineCallbacks
    def test_rename_validates_label(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        yield self.paired_locally(key)
        for label in ("", "x" * 65):
            response = yield observer.request("device.pair.rename", {"deviceId": key.device_id, "label": label})
            self.assertEqual(response["error"]["code"], "INVALID_REQUEST", label)

    @inlineCallbacks
    def test_rename_unknown_device(self):
        observer = yield self.operator()
        response = yield observer.request("device.pair.rename", {"deviceId": "0" * 64, "label": "x"})
        self.assertFalse(response["ok"])
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")


class DeviceTokenTests(PairingTestBase):
    """Device tokens are credentials: rotation hands the new one only to its owner, and retires the old."""

    @inlineCallbacks
    def token_connect(self, key, token, **kwargs):
        client, response = yield self.device_connect(key, auth={"deviceToken": token}, **kwargs)
        return (client, response)

    @inlineCallbacks
    def assert_token_mismatch(self, client, response):
        self.assertFalse(response["ok"], response)
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(response["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH")
        code, _ = yield client.closed
        self.assertEqual(code, 1008)

    @inlineCallbacks
    def test_device_token_authenticates(self):
        key = DeviceKeyPair.generate()
        token = yield self.paired_locally(key)
        client, response = yield self.token_connect(key, token, remote=True)
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["auth"]["method"], "device-token")
        self.assertEqual(response["payload"]["auth"]["deviceToken"], token)

    @inlineCallbacks
    def test_rotate_in_band_for_same_device(self):
        key = DeviceKeyPair.generate()
        old = yield self.paired_locally(key)
        client, response = yield self.token_connect(key, old)
        self.assertTrue(response["ok"], response)
        rotated = yield client.request("device.token.rotate", {"deviceId": key.device_id, "role": "operator"})
        self.assertTrue(rotated["ok"], rotated)
        payload = rotated["payload"]
        self.assertEqual(payload["tokenDelivery"], "in-band")
        self.assertEqual(payload["deviceId"], key.device_id)
        self.assertEqual(payload["role"], "operator")
        self.assertIsInstance(payload["rotatedAtMs"], int)
        new = payload["token"]
        self.assertEqual(len(new), 43)
        self.assertNotEqual(new, old)
        # the rotating socket itself stays usable
        health = yield client.request("health", {})
        self.assertTrue(health["ok"])

        stale, response = yield self.token_connect(key, old)
        yield self.assert_token_mismatch(stale, response)
        fresh, response = yield self.token_connect(key, new)
        self.assertTrue(response["ok"], response)

    @inlineCallbacks
    def test_rotate_withheld_cross_device(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        old = yield self.paired_locally(key)
        device, response = yield self.token_connect(key, old)
        self.assertTrue(response["ok"], response)
        rotated = yield observer.request("device.token.rotate", {"deviceId": key.device_id, "role": "operator"})
        self.assertTrue(rotated["ok"], rotated)
        self.assertEqual(rotated["payload"]["tokenDelivery"], "withheld-cross-device")
        self.assertNotIn("token", rotated["payload"])
        code, reason = yield device.closed
        self.assertEqual(code, 4001)
        self.assertEqual(reason, "client invalidated: device token rotated")
        stale, response = yield self.token_connect(key, old)
        yield self.assert_token_mismatch(stale, response)

    @inlineCallbacks
    def test_rotate_with_narrower_scopes(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        yield self.paired_locally(key, scopes=["operator.read", "operator.write"])
        rotated = yield observer.request(
            "device.token.rotate", {"deviceId": key.device_id, "role": "operator", "scopes": ["operator.read"]}
        )
        self.assertTrue(rotated["ok"], rotated)
        self.assertEqual(rotated["payload"]["scopes"], ["operator.read"])
        wider = yield observer.request(
            "device.token.rotate", {"deviceId": key.device_id, "role": "operator", "scopes": ["operator.admin"]}
        )
        self.assertEqual(wider["error"]["code"], "INVALID_REQUEST")

    @inlineCallbacks
    def test_revoke_makes_token_fail(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        token = yield self.paired_locally(key)
        device, response = yield self.token_connect(key, token)
        self.assertTrue(response["ok"], response)
        revoked = yield observer.request("device.token.revoke", {"deviceId": key.device_id, "role": "operator"})
        self.assertTrue(revoked["ok"], revoked)
        self.assertEqual(revoked["payload"]["deviceId"], key.device_id)
        code, reason = yield device.closed
        self.assertEqual((code, reason), (4001, "client invalidated: device token revoked"))
        client, response = yield self.token_connect(key, token)
        yield self.assert_token_mismatch(client, response)
        again = yield observer.request("device.token.revoke", {"deviceId": key.device_id, "role": "operator"})
        self.assertEqual(again["error"]["code"], "INVALID_REQUEST")

    @inlineCallbacks
    def test_non_admin_may_not_touch_another_device(self):
        other = DeviceKeyPair.generate()
        yield self.paired_locally(other)
        non_admin = yield self.operator(["operator.pairing", "operator.read"])
        for method in ("device.token.rotate", "device.token.revoke"):
            response = yield non_admin.request(method, {"deviceId": other.device_id, "role": "operator"})
            self.assertEqual(response["error"]["code"], "FORBIDDEN", method)
            self.assertEqual(response["error"]["message"], "missing scope: operator.admin")
            self.assertEqual(response["error"]["details"]["missingScope"], "operator.admin")
        self.assertIsNotNone(self.store.token(other.device_id, "operator"))

    @inlineCallbacks
    def test_non_admin_manages_only_its_own_operator_token(self):
        key = DeviceKeyPair.generate()
        scopes = ["operator.pairing", "operator.read"]
        token = yield self.paired_locally(key, scopes=scopes)
        client, response = yield self.token_connect(key, token, scopes=scopes)
        self.assertTrue(response["ok"], response)
        for method in ("device.token.rotate", "device.token.revoke"):
            node = yield client.request(method, {"deviceId": key.device_id, "role": "node"})
            self.assertEqual(node["error"]["code"], "FORBIDDEN", method)
            self.assertEqual(node["error"]["details"]["missingScope"], "operator.admin")
        broader = yield client.request(
            "device.token.rotate", {"deviceId": key.device_id, "role": "operator", "scopes": ["operator.write"]}
        )
        self.assertEqual(broader["error"]["code"], "FORBIDDEN")
        own = yield client.request("device.token.rotate", {"deviceId": key.device_id, "role": "operator"})
        self.assertTrue(own["ok"], own)
        self.assertEqual(own["payload"]["tokenDelivery"], "in-band")

    @inlineCallbacks
    def test_token_methods_need_pairing_scope(self):
        reader = yield self.operator(["operator.read"])
        response = yield reader.request("device.token.rotate", {"deviceId": "0" * 64, "role": "operator"})
        self.assertEqual(response["error"]["code"], "FORBIDDEN")
        self.assertEqual(response["error"]["details"]["missingScope"], "operator.pairing")


class RestartPersistenceTests(TestCase):
    """Pairings and tokens are the gateway's long-lived credentials: a restart must not forget them."""

    timeout = 15

    @inlineCallbacks
    def stop(self, running):
        yield running.port.stopListening()
        yield running.websocket.stopService()
        yield running.gateway.pairing.stopService()

    @inlineCallbacks
    def test_paired_devices_and_tokens_survive_restart(self):
        state_dir = os.path.abspath(self.mktemp())
        first = yield start_gateway(self, state_dir=state_dir)
        key = DeviceKeyPair.generate()
        client, response = yield connect(self, first.url, device=key)
        self.assertTrue(response["ok"], response)
        token = response["payload"]["auth"]["deviceToken"]
        renamed = yield client.request("device.pair.rename", {"deviceId": key.device_id, "label": "kept"})
        self.assertTrue(renamed["ok"], renamed)
        yield client.close()
        yield self.stop(first)

        second = yield start_gateway(self, state_dir=state_dir)
        self.assertIsNot(second.gateway, first.gateway)
        # remote + device token only: works only if both the pairing and the token were persisted
        client, response = yield connect(self, second.url, device=key, headers=REMOTE, auth={"deviceToken": token})
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["auth"]["deviceToken"], token)
        listed = yield client.request("device.pair.list", {})
        (device,) = listed["payload"]["paired"]
        self.assertEqual(device["deviceId"], key.device_id)
        self.assertEqual(device["operatorLabel"], "kept")


class PendingExpiryTests(SynchronousTestCase):
    """Pending requests live five minutes (PAIRING_PENDING_TTL_MS); driven by a task.Clock."""

    def setUp(self):
        self.clock = Clock()
        self.gateway = make_gateway(self, clock=self.clock)
        self.pairing = self.gateway.pairing
        key = DeviceKeyPair.generate()
        self.device = VerifiedDevice(
            device_id=key.device_id, public_key=key.public_key, raw_key=key.raw_public_key, signature_version="v3"
        )
        self.context = PairingRequestContext(
            role="operator",
            scopes=("operator.read",),
            client=dict(CLI_CLIENT),
            remote_ip="203.0.113.7",
            is_local=False,
            has_origin=False,
            auth_method="token",
        )

    def request(self):
        failure = self.failureResultOf(self.pairing.ensure_access(self.device, self.context), GatewayError)
        self.assertEqual(failure.value.code, "NOT_PAIRED")
        return failure.value.details["requestId"]

    def test_local_request_is_approved_silently(self):
        local = PairingRequestContext(
            role="operator", scopes=(), client=dict(CLI_CLIENT), remote_ip="127.0.0.1", is_local=True, has_origin=False, auth_method="token"
        )
        paired = self.successResultOf(self.pairing.ensure_access(self.device, local))
        self.assertEqual(paired.device_id, self.device.device_id)
        self.assertEqual(paired.last_seen_reason, "silent-pairing")

    def test_origin_header_prevents_silent_pairing(self):
        browser = PairingRequestContext(
            role="operator", scopes=(), client=dict(CLI_CLIENT), remote_ip="127.0.0.1", is_local=True, has_origin=True, auth_method="token"
        )
        self.failureResultOf(self.pairing.ensure_access(self.device, browser), GatewayError)

    def test_loopback_control_ui_with_origin_is_approved_silently(self):
        """The gateway's own UI always sends an Origin (checked in the handshake); it pairs silently."""
        for client_id in ("openclaw-control-ui", "webchat"):
            key = DeviceKeyPair.generate()
            device = VerifiedDevice(device_id=key.device_id, public_key=key.public_key, raw_key=key.raw_public_key, signature_version="v3")
            browser = PairingRequestContext(
                role="operator",
                scopes=("operator.admin",),
                client={"id": client_id, "version": "1", "platform": "Linux x86_64", "mode": "webchat"},
                remote_ip="127.0.0.1",
                is_local=True,
                has_origin=True,
                auth_method="token",
            )
            paired = self.successResultOf(self.pairing.ensure_access(device, browser))
            self.assertEqual(paired.last_seen_reason, "silent-pairing")

    def test_remote_control_ui_still_needs_approval(self):
        remote = PairingRequestContext(
            role="operator",
            scopes=(),
            client={"id": "openclaw-control-ui", "version": "1", "platform": "x", "mode": "webchat"},
            remote_ip="203.0.113.9",
            is_local=False,
            has_origin=True,
            auth_method="token",
        )
        self.failureResultOf(self.pairing.ensure_access(self.device, remote), GatewayError)

    def test_still_approvable_before_ttl(self):
        request_id = self.request()
        self.clock.advance(299)
        self.assertEqual([r.request_id for r in self.pairing.list_pending()], [request_id])
        device = self.successResultOf(maybeDeferred(self.pairing.approve, request_id, ["operator.admin"]))
        self.assertEqual(device.device_id, self.device.device_id)

    def test_expires_after_five_minutes(self):
        request_id = self.request()
        self.clock.advance(301)
        self.assertEqual(self.pairing.list_pending(), [])
        failure = self.failureResultOf(maybeDeferred(self.pairing.approve, request_id, ["operator.admin"]), GatewayError)
        self.assertEqual(failure.value.code, "INVALID_REQUEST")
        failure = self.failureResultOf(maybeDeferred(self.pairing.reject, request_id), GatewayError)
        self.assertEqual(failure.value.code, "INVALID_REQUEST")

    def test_expiry_is_announced_to_pairing_operators(self):
        """Approval prompts elsewhere close when their request lapses."""
        sent = []
        self.patch(self.gateway.clients, "broadcast", lambda event, payload, **kw: sent.append((event, payload)))
        request_id = self.request()
        sent.clear()
        self.clock.advance(301)
        self.successResultOf(self.pairing.prune_expired())
        resolved = [payload for event, payload in sent if event == "device.pair.resolved"]
        self.assertEqual(len(resolved), 1)
        self.assertEqual(resolved[0]["requestId"], request_id)
        self.assertEqual((resolved[0]["decision"], resolved[0]["reason"]), ("rejected", "expired"))
        self.assertEqual(resolved[0]["deviceId"], self.device.device_id)

    def test_prune_removes_expired_from_store(self):
        self.request()
        self.clock.advance(301)  # also fires the periodic pruner
        self.successResultOf(self.pairing.prune_expired())
        self.assertEqual(self.pairing.store.all_pending(), [])

    def test_prune_keeps_live_requests(self):
        request_id = self.request()
        self.clock.advance(100)
        self.successResultOf(self.pairing.prune_expired())
        self.assertEqual([r.request_id for r in self.pairing.store.all_pending()], [request_id])

    def test_retry_refreshes_ttl(self):
        request_id = self.request()
        self.clock.advance(200)
        self.assertEqual(self.request(), request_id)
        self.clock.advance(200)  # 400 s after creation, 200 s after the refresh
        self.assertEqual([r.request_id for r in self.pairing.list_pending()], [request_id])
        self.successResultOf(maybeDeferred(self.pairing.approve, request_id, ["operator.admin"]))

    def test_expired_request_is_replaced_on_retry(self):
        first = self.request()
        self.clock.advance(301)
        second = self.request()
        self.assertNotEqual(first, second)
        self.assertEqual([r.request_id for r in self.pairing.store.all_pending()], [second])


class TokenIssueWriteTests(SynchronousTestCase):
    """Confirming a device's token on every handshake must not cost a disk write each time."""

    def test_confirming_a_token_writes_only_when_something_changed(self):
        clock = Clock()
        clock.advance(1_000)
        gateway = make_gateway(self, clock=clock)
        store = gateway.pairing.store
        writes = []
        original = store.put_token
        store.put_token = lambda token: (writes.append(token.token), original(token))[1]
        device = PairedDevice(
            device_id="d" * 64, public_key="k", roles=["operator"], scopes=["operator.read"], created_at_ms=0, approved_at_ms=0
        )
        first = self.successResultOf(gateway.pairing.issue_token(device, "operator"))
        self.assertEqual(len(writes), 1)  # minted
        again = self.successResultOf(gateway.pairing.issue_token(device, "operator"))
        self.assertEqual((again.token, len(writes)), (first.token, 1))  # confirmed from memory
        clock.advance(61)
        self.successResultOf(gateway.pairing.issue_token(device, "operator"))
        self.assertEqual(len(writes), 2)  # last-used refreshed at most once a minute
        device.scopes = ["operator.read", "operator.write"]
        upgraded = self.successResultOf(gateway.pairing.issue_token(device, "operator"))
        self.assertEqual((len(writes), upgraded.scopes, upgraded.token), (3, device.scopes, first.token))


class ApproverScopeTests(PairingTestBase):
    """An approver cannot grant what it does not hold (issue 13, item 5).

    The reference answers INVALID_REQUEST "missing scope: <the first scope the approver lacks>"
    and leaves the request pending, so an admin can still approve it.
    """

    @inlineCallbacks
    def pending_request(self, scopes, **kwargs):
        key = DeviceKeyPair.generate()
        client, response = yield self.device_connect(key, remote=True, scopes=scopes, **kwargs)
        details = yield self.assert_not_paired(client, response, key)
        return (key, details["requestId"])

    @inlineCallbacks
    def test_pairing_only_operator_cannot_grant_admin(self):
        key, request_id = yield self.pending_request(["operator.admin"])
        approver = yield self.operator(["operator.pairing"])
        answer = yield approver.request("device.pair.approve", {"requestId": request_id})
        self.assertFalse(answer["ok"], answer)
        self.assertEqual(answer["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(answer["error"]["message"], "missing scope: operator.admin")
        self.assertIsNone(self.store.paired(key.device_id))
        self.assertEqual([r.request_id for r in self.store.all_pending()], [request_id])
        admin = yield self.operator(["operator.admin"])
        approved = yield admin.request("device.pair.approve", {"requestId": request_id})
        self.assertTrue(approved["ok"], approved)
        self.assertEqual(self.store.paired(key.device_id).scopes, ["operator.admin"])

    @inlineCallbacks
    def test_the_first_scope_lacked_is_named(self):
        _, request_id = yield self.pending_request(["operator.read", "operator.approvals"])
        approver = yield self.operator(["operator.pairing", "operator.write"])
        answer = yield approver.request("device.pair.approve", {"requestId": request_id})
        self.assertEqual(answer["error"]["message"], "missing scope: operator.approvals")

    @inlineCallbacks
    def test_implied_scopes_may_be_granted(self):
        key, request_id = yield self.pending_request(["operator.read", "operator.write"])
        approver = yield self.operator(["operator.pairing", "operator.write"])
        answer = yield approver.request("device.pair.approve", {"requestId": request_id})
        self.assertTrue(answer["ok"], answer)
        self.assertEqual(self.store.paired(key.device_id).scopes, ["operator.read", "operator.write"])

    @inlineCallbacks
    def test_non_operator_role_needs_an_admin_approver(self):
        key, request_id = yield self.pending_request([], role="node", client=NODE_CLIENT)
        approver = yield self.operator(["operator.pairing", "operator.write"])
        answer = yield approver.request("device.pair.approve", {"requestId": request_id})
        self.assertEqual(answer["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(answer["error"]["message"], "device pairing approval denied")
        self.assertIsNone(self.store.paired(key.device_id))
