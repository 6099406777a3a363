"""Device identity units (protocol §3.1–§3.3): key normalisation, device ids, signed payloads, proof checks.

None of this needs a socket or a clock: every function is pure, so these are SynchronousTestCases.
"""
from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from openclaw.protocol.errors import GatewayError
from openclaw.security.device_identity import (
    DeviceKeyError,
    DeviceKeyPair,
    SignatureFields,
    b64url_encode,
    device_id_for,
    normalise_metadata,
    raw_public_key,
    signature_token,
    verify_device_proof,
    verify_signature,
)

# The golden capture (golden-frames.md): one identity, two accepted connects.
GOLDEN_PUBLIC_KEY = "eymUd2_tzQdBoal4z_XWUGvHQjZ7mESL-hzTVESoQCA"
GOLDEN_DEVICE_ID = "a34d2e741f00bce9ae5c8c9b16a4a7f527ba378c7f7b99cfa27aa9394325a7d7"
GOLDEN_CLIENT = {"id": "cli", "version": "0.1.0-py", "platform": "linux", "mode": "cli"}
GOLDEN_SCOPES = ["operator.admin", "operator.read", "operator.write", "operator.approvals", "operator.pairing"]
GOLDEN_AUTH = {"token": "anchor-test-token-123"}
GOLDEN_V3 = {
    "id": GOLDEN_DEVICE_ID,
    "publicKey": GOLDEN_PUBLIC_KEY,
    "signature": "PLj42Uwrw0TSjDHzjns9s12kgSxol962Wgf66LK1pdlxZO5L9hlwreIQEB5TJMDqsa90ZWa8u6IqB4aqCNEKDA",
    "signedAt": 1795482949093,
    "nonce": "f11c3c7e-02ed-4f66-8502-c2bd875c7cc8",
}
GOLDEN_V2 = {
    "id": GOLDEN_DEVICE_ID,
    "publicKey": GOLDEN_PUBLIC_KEY,
    "signature": "Da1k6dgZPGoVjwJUqsusNXgh5xumvyvfzmzPHYf5ZZgj-JifNA7DMPct5nreKS0ZV9T4DLa3KfrN2JihzhaODQ",
    "signedAt": 1795482951784,
    "nonce": "73f9c263-db76-47ac-96b4-aa81d3c82f44",
}


class DeviceIdTests(SynchronousTestCase):
    """The device id is the server's handle for a key, so it must be exactly sha256(raw key) in hex."""

    def test_device_id_is_sha256_hex_of_raw_key(self):
        key = DeviceKeyPair.generate()
        raw = key.raw_public_key
        self.assertEqual(len(raw), 32)
        self.assertEqual(device_id_for(raw), hashlib.sha256(raw).hexdigest())
        self.assertEqual(key.device_id, hashlib.sha256(raw).hexdigest())
        self.assertRegex(key.device_id, r"^[a-f0-9]{64}$")

    def test_golden_device_id(self):
        self.assertEqual(device_id_for(raw_public_key(GOLDEN_PUBLIC_KEY)), GOLDEN_DEVICE_ID)

    def test_wire_public_key_is_base64url_unpadded(self):
        key = DeviceKeyPair.generate()
        self.assertEqual(len(key.public_key), 43)
        self.assertNotIn("=", key.public_key)
        self.assertEqual(base64.urlsafe_b64decode(key.public_key + "="), key.raw_public_key)


class PublicKeyNormalisationTests(SynchronousTestCase):
    """Clients send the key in several encodings; all must reduce to the same raw 32 bytes."""

    def setUp(self):
        self.key = DeviceKeyPair.generate()
        self.raw = self.key.raw_public_key

    def test_base64url_unpadded(self):
        self.assertEqual(raw_public_key(b64url_encode(self.raw)), self.raw)

    def test_padded_standard_base64(self):
        text = base64.b64encode(self.raw).decode("ascii")
        self.assertTrue(text.endswith("="))
        self.assertEqual(raw_public_key(text), self.raw)

    def test_standard_alphabet_with_plus_and_slash(self):
        # Find a key whose encoding really exercises the alphabet difference.
        for _ in range(200):
            raw = DeviceKeyPair.generate().raw_public_key
            text = base64.b64encode(raw).decode("ascii")
            if "+" in text or "/" in text:
                break
        self.assertEqual(raw_public_key(text), raw)
        self.assertEqual(raw_public_key(text.rstrip("=")), raw)

    def test_pem_spki(self):
        pem = (
            self.key.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )
        self.assertIn("BEGIN PUBLIC KEY", pem)
        self.assertEqual(raw_public_key(pem), self.raw)
        self.assertEqual(device_id_for(raw_public_key(pem)), self.key.device_id)

    def test_wrong_length_rejected(self):
        for raw in (self.raw[:31], self.raw + b"\x00", b"", b"\x01" * 64):
            with self.subTest(length=len(raw)):
                self.assertRaises(DeviceKeyError, raw_public_key, b64url_encode(raw))

    def test_garbage_rejected(self):
        for text in ("", "not base64 at all!!", "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----", None, 42):
            with self.subTest(text=text):
                self.assertRaises(DeviceKeyError, raw_public_key, text)

    def test_non_ed25519_pem_rejected(self):
        from cryptography.hazmat.primitives.asymmetric import ec

        pem = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )
        self.assertRaises(DeviceKeyError, raw_public_key, pem)

    def test_overlong_input_rejected(self):
        self.assertRaises(DeviceKeyError, raw_public_key, "A" * 4097)


def _fields(**overrides):
    values = dict(
        device_id="dev",
        client_id="cli",
        client_mode="cli",
        role="operator",
        scopes=("operator.write", "operator.read"),
        signed_at_ms=1700000000123,
        token="tok",
        nonce="n-1",
        platform="linux",
        device_family="",
    )
    values.update(overrides)
    return SignatureFields(**values)


class SignedPayloadTests(SynchronousTestCase):
    """The payload strings are byte-for-byte what the reference clients sign (§3.2)."""

    def test_v3_payload(self):
        fields = _fields(platform="  MacOS ", device_family=" iPad ")
        self.assertEqual(
            fields.payload_v3(),
            "v3|dev|cli|cli|operator|operator.write,operator.read|1700000000123|tok|n-1|macos|ipad",
        )

    def test_v2_payload_has_no_metadata(self):
        fields = _fields(platform="MacOS", device_family="iPad")
        self.assertEqual(
            fields.payload_v2(), "v2|dev|cli|cli|operator|operator.write,operator.read|1700000000123|tok|n-1"
        )

    def test_empty_values_give_empty_segments(self):
        fields = _fields(scopes=(), token="", platform="", device_family="")
        self.assertEqual(fields.payload_v3(), "v3|dev|cli|cli|operator||1700000000123||n-1||")
        self.assertEqual(fields.payload_v2(), "v2|dev|cli|cli|operator||1700000000123||n-1")

    def test_scopes_keep_sent_order(self):
        a = _fields(scopes=("operator.read", "operator.write")).payload_v3()
        b = _fields(scopes=("operator.write", "operator.read")).payload_v3()
        self.assertIn("|operator.read,operator.write|", a)
        self.assertIn("|operator.write,operator.read|", b)

    def test_metadata_lowercases_ascii_only(self):
        self.assertEqual(normalise_metadata("  LiNuX\t"), "linux")
        self.assertEqual(normalise_metadata("ÄPPLE"), "Äpple")
        self.assertEqual(normalise_metadata("İOS"), "İos")
        self.assertEqual(normalise_metadata(None), "")
        self.assertEqual(normalise_metadata(""), "")

    def test_token_precedence(self):
        self.assertEqual(signature_token({"token": "a", "deviceToken": "b", "bootstrapToken": "c"}), "a")
        self.assertEqual(signature_token({"deviceToken": "b", "bootstrapToken": "c"}), "b")
        self.assertEqual(signature_token({"bootstrapToken": "c"}), "c")
        self.assertEqual(signature_token({"password": "p"}), "")
        self.assertEqual(signature_token({}), "")
        self.assertEqual(signature_token(None), "")

    def test_empty_string_token_wins(self):
        # ``??`` semantics: "" is present, so deviceToken is not used.
        self.assertEqual(signature_token({"token": "", "deviceToken": "b"}), "")
        self.assertEqual(signature_token({"deviceToken": "", "bootstrapToken": "c"}), "")


class GoldenSignatureTests(SynchronousTestCase):
    """Signatures captured from the reference must verify here, each as the version it was made with."""

    def _verify(self, device):
        return verify_device_proof(
            device,
            challenge_nonce=device["nonce"],
            now_ms=device["signedAt"],
            client=GOLDEN_CLIENT,
            role="operator",
            scopes=GOLDEN_SCOPES,
            auth=GOLDEN_AUTH,
        )

    def test_v3_golden_verifies_as_v3(self):
        verified = self._verify(GOLDEN_V3)
        self.assertEqual(verified.signature_version, "v3")
        self.assertEqual(verified.device_id, GOLDEN_DEVICE_ID)
        self.assertEqual(verified.public_key, GOLDEN_PUBLIC_KEY)

    def test_v2_golden_verifies_as_v2(self):
        verified = self._verify(GOLDEN_V2)
        self.assertEqual(verified.signature_version, "v2")

    def test_golden_signature_fails_with_other_token(self):
        fields = SignatureFields(
            device_id=GOLDEN_DEVICE_ID,
            client_id="cli",
            client_mode="cli",
            role="operator",
            scopes=tuple(GOLDEN_SCOPES),
            signed_at_ms=GOLDEN_V3["signedAt"],
            token="another-token",
            nonce=GOLDEN_V3["nonce"],
            platform="linux",
        )
        self.assertIsNone(verify_signature(raw_public_key(GOLDEN_PUBLIC_KEY), GOLDEN_V3["signature"], fields))

    def test_golden_signature_fails_with_reordered_scopes(self):
        fields = SignatureFields(
            device_id=GOLDEN_DEVICE_ID,
            client_id="cli",
            client_mode="cli",
            role="operator",
            scopes=tuple(sorted(GOLDEN_SCOPES, reverse=True)),
            signed_at_ms=GOLDEN_V3["signedAt"],
            token=GOLDEN_AUTH["token"],
            nonce=GOLDEN_V3["nonce"],
            platform="linux",
        )
        self.assertIsNone(verify_signature(raw_public_key(GOLDEN_PUBLIC_KEY), GOLDEN_V3["signature"], fields))

    def test_padded_standard_signature_is_accepted(self):
        raw_sig = base64.urlsafe_b64decode(GOLDEN_V3["signature"] + "==")
        device = dict(GOLDEN_V3, signature=base64.b64encode(raw_sig).decode("ascii"))
        self.assertEqual(self._verify(device).signature_version, "v3")


class VerifyDeviceProofTests(SynchronousTestCase):
    """Each failure has its own message/details code and closes 1008; earlier checks win (§3.3)."""

    NOW = 1_800_000_000_000
    NONCE = "challenge-nonce"
    CLIENT = {"id": "cli", "version": "1.0.0", "platform": "Linux", "mode": "cli", "deviceFamily": "Desktop"}
    SCOPES = ["operator.read", "operator.write"]
    AUTH = {"token": "secret"}

    def setUp(self):
        self.key = DeviceKeyPair.generate()

    def _block(self, **overrides):
        block = self.key.device_block(
            nonce=overrides.pop("sign_nonce", self.NONCE),
            signed_at_ms=overrides.pop("signed_at_ms", self.NOW),
            client=overrides.pop("sign_client", self.CLIENT),
            role="operator",
            scopes=overrides.pop("sign_scopes", self.SCOPES),
            auth=overrides.pop("sign_auth", self.AUTH),
            version=overrides.pop("version", "v3"),
        )
        block.update(overrides)
        return block

    def _verify(self, block, *, now_ms=None, auth=None, scopes=None):
        return verify_device_proof(
            block,
            challenge_nonce=self.NONCE,
            now_ms=self.NOW if now_ms is None else now_ms,
            client=self.CLIENT,
            role="operator",
            scopes=self.SCOPES if scopes is None else scopes,
            auth=self.AUTH if auth is None else auth,
        )

    def _fails(self, block, message, reason, code, **kwargs):
        error = self.assertRaises(GatewayError, self._verify, block, **kwargs)
        self.assertEqual(error.code, "INVALID_REQUEST")
        self.assertEqual(error.message, message)
        self.assertEqual(error.details, {"code": code, "reason": reason})
        self.assertEqual(error.close_code, 1008)
        return error

    def test_valid_v3_and_v2(self):
        self.assertEqual(self._verify(self._block()).signature_version, "v3")
        self.assertEqual(self._verify(self._block(version="v2")).signature_version, "v2")

    def test_pem_public_key_is_accepted_and_canonicalised(self):
        pem = (
            self.key.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )
        verified = self._verify(self._block(publicKey=pem))
        self.assertEqual(verified.public_key, self.key.public_key)

    def test_device_id_mismatch(self):
        self._fails(
            self._block(id="0" * 64), "device identity mismatch", "device-id-mismatch", "DEVICE_AUTH_DEVICE_ID_MISMATCH"
        )

    def test_unreadable_public_key_is_an_id_mismatch(self):
        # As in the reference, the id is derived first; a key that cannot be read derives no id.
        self._fails(
            self._block(publicKey="%%%"),
            "device identity mismatch",
            "device-id-mismatch",
            "DEVICE_AUTH_DEVICE_ID_MISMATCH",
        )

    def test_signature_expired_both_directions(self):
        for skew in (120_001, -120_001):
            with self.subTest(skew=skew):
                self._fails(
                    self._block(signed_at_ms=self.NOW + skew),
                    "device signature expired",
                    "device-signature-stale",
                    "DEVICE_AUTH_SIGNATURE_EXPIRED",
                )

    def test_skew_window_is_inclusive_at_120s(self):
        for skew in (120_000, -120_000):
            with self.subTest(skew=skew):
                self.assertEqual(self._verify(self._block(signed_at_ms=self.NOW + skew)).signature_version, "v3")

    def test_nonce_required(self):
        for nonce in ("", "   "):
            with self.subTest(nonce=nonce):
                self._fails(
                    self._block(nonce=nonce), "device nonce required", "device-nonce-missing", "DEVICE_AUTH_NONCE_REQUIRED"
                )

    def test_nonce_is_trimmed(self):
        self.assertEqual(self._verify(self._block(nonce=f"  {self.NONCE} ")).signature_version, "v3")

    def test_nonce_mismatch(self):
        self._fails(
            self._block(sign_nonce="other", nonce="other"),
            "device nonce mismatch",
            "device-nonce-mismatch",
            "DEVICE_AUTH_NONCE_MISMATCH",
        )

    def test_signature_invalid(self):
        other = DeviceKeyPair.generate()
        block = self._block(signature=other.sign("v3|whatever"))
        self._fails(block, "device signature invalid", "device-signature", "DEVICE_AUTH_SIGNATURE_INVALID")

    def test_signature_not_base64_is_invalid(self):
        self._fails(
            self._block(signature="***"), "device signature invalid", "device-signature", "DEVICE_AUTH_SIGNATURE_INVALID"
        )

    def test_signature_bound_to_scopes_and_token(self):
        block = self._block()
        self._fails(
            block,
            "device signature invalid",
            "device-signature",
            "DEVICE_AUTH_SIGNATURE_INVALID",
            scopes=["operator.write", "operator.read"],
        )
        self._fails(
            block,
            "device signature invalid",
            "device-signature",
            "DEVICE_AUTH_SIGNATURE_INVALID",
            auth={"token": "different"},
        )

    def test_v3_metadata_is_normalised_before_verifying(self):
        # Signed with already-lowercased metadata; the server normalises "Linux"/"Desktop" the same way.
        block = self._block(sign_client=dict(self.CLIENT, platform="linux", deviceFamily="desktop"))
        self.assertEqual(self._verify(block).signature_version, "v3")

    def test_empty_string_token_is_what_is_signed(self):
        auth = {"token": "", "deviceToken": "device-secret"}
        good = self._block(sign_auth=auth)
        self.assertEqual(self._verify(good, auth=auth).signature_version, "v3")
        signed_with_device_token = self._block(sign_auth={"deviceToken": "device-secret"})
        self._fails(
            signed_with_device_token,
            "device signature invalid",
            "device-signature",
            "DEVICE_AUTH_SIGNATURE_INVALID",
            auth=auth,
        )

    def test_check_order(self):
        """When several checks fail, the first in the reference's order is reported."""
        stale = self.NOW + 10 * 60 * 1000
        # id mismatch beats stale, missing nonce and bad signature
        self._fails(
            self._block(id="f" * 64, signed_at_ms=stale, nonce="", signature="AAAA"),
            "device identity mismatch",
            "device-id-mismatch",
            "DEVICE_AUTH_DEVICE_ID_MISMATCH",
        )
        # stale beats missing nonce
        self._fails(
            self._block(signed_at_ms=stale, nonce="", signature="AAAA"),
            "device signature expired",
            "device-signature-stale",
            "DEVICE_AUTH_SIGNATURE_EXPIRED",
        )
        # missing nonce beats bad signature
        self._fails(
            self._block(nonce="", signature="AAAA"),
            "device nonce required",
            "device-nonce-missing",
            "DEVICE_AUTH_NONCE_REQUIRED",
        )
        # nonce mismatch beats bad signature
        self._fails(
            self._block(nonce="wrong", signature="AAAA"),
            "device nonce mismatch",
            "device-nonce-mismatch",
            "DEVICE_AUTH_NONCE_MISMATCH",
        )
