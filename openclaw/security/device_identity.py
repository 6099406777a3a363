"""Ed25519 device identity: key normalisation, device ids and the v3/v2 signature payloads (§3).

Clients sign a ``|``-joined payload bound to this socket's challenge nonce; the server rebuilds it
from the connect params and tries v3 first, then the older v2 form.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..protocol.constants import CLOSE_POLICY_VIOLATION, DEVICE_SIGNATURE_SKEW_MS
from ..protocol.errors import GatewayError

MAX_PUBLIC_KEY_INPUT = 4096
RAW_KEY_BYTES = 32


class DeviceKeyError(ValueError):
    """The presented public key cannot be turned into a raw Ed25519 key."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_decode_permissive(text: str) -> bytes:
    """Decode base64 in either alphabet, with or without padding (the reference is lenient)."""
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/").rstrip("=")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc


def raw_public_key(text: object) -> bytes:
    """The raw 32-byte key from base64url/base64 raw bytes or a PEM SPKI block."""
    if not isinstance(text, str) or not text or len(text) > MAX_PUBLIC_KEY_INPUT:
        raise DeviceKeyError("public key missing or too long")
    if "BEGIN" in text:
        try:
            key = serialization.load_pem_public_key(text.encode("utf-8"))
        except (ValueError, TypeError) as exc:
            raise DeviceKeyError("unreadable PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise DeviceKeyError("not an Ed25519 key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = b64_decode_permissive(text)
    except ValueError as exc:
        raise DeviceKeyError("public key is not base64") from exc
    if len(raw) != RAW_KEY_BYTES:
        raise DeviceKeyError("public key must be 32 bytes")
    return raw


def device_id_for(raw_key: bytes) -> str:
    return hashlib.sha256(raw_key).hexdigest()


def normalise_metadata(value: str | None) -> str:
    """Trim and lowercase ASCII letters only, as the v3 payload requires."""
    if not value:
        return ""
    return value.strip().translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@attrs.frozen
class SignatureFields:
    """Everything the signed payload covers."""

    device_id: str
    client_id: str
    client_mode: str
    role: str
    scopes: tuple[str, ...]
    signed_at_ms: int
    token: str
    nonce: str
    platform: str = ""
    device_family: str = ""

    @classmethod
    def for_connect(
        cls,
        device_id: str,
        client: dict[str, Any],
        role: str,
        scopes: list[str] | tuple[str, ...],
        signed_at_ms: int,
        auth: dict[str, Any] | None,
        nonce: str,
    ) -> SignatureFields:
        """The fields as both sides derive them from a connect request."""
        return cls(
            device_id=device_id,
            client_id=client.get("id", ""),
            client_mode=client.get("mode", ""),
            role=role,
            scopes=tuple(scopes),
            signed_at_ms=signed_at_ms,
            token=signature_token(auth),
            nonce=nonce,
            platform=client.get("platform", ""),
            device_family=client.get("deviceFamily", ""),
        )

    def payload_v2(self) -> str:
        return "|".join(
            (
                "v2",
                self.device_id,
                self.client_id,
                self.client_mode,
                self.role,
                ",".join(self.scopes),
                str(self.signed_at_ms),
                self.token,
                self.nonce,
            )
        )

    def payload_v3(self) -> str:
        return "|".join(
            (
                "v3" + self.payload_v2()[2:],
                normalise_metadata(self.platform),
                normalise_metadata(self.device_family),
            )
        )


def signature_token(auth: dict[str, Any] | None) -> str:
    """``auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`` (an empty string wins)."""
    auth = auth or {}
    for key in ("token", "deviceToken", "bootstrapToken"):
        value = auth.get(key)
        if value is not None:
            return str(value)
    return ""


def verify_signature(raw_key: bytes, signature: str, fields: SignatureFields) -> str | None:
    """Return ``"v3"`` or ``"v2"`` for the payload the signature covers, else ``None``."""
    try:
        sig = b64_decode_permissive(signature)
        key = Ed25519PublicKey.from_public_bytes(raw_key)
    except ValueError:
        return None
    for version, payload in (("v3", fields.payload_v3()), ("v2", fields.payload_v2())):
        try:
            key.verify(sig, payload.encode("utf-8"))
        except InvalidSignature:
            continue
        return version
    return None


def _device_failure(message: str, reason: str, code: str) -> GatewayError:
    return GatewayError(
        "INVALID_REQUEST",
        message,
        {"code": code, "reason": reason},
        close_code=CLOSE_POLICY_VIOLATION,
    )


@attrs.frozen
class VerifiedDevice:
    device_id: str
    public_key: str  # canonical base64url of the raw key
    raw_key: bytes
    signature_version: str


def verify_device_proof(
    device: dict[str, Any],
    *,
    challenge_nonce: str,
    now_ms: int,
    client: dict[str, Any],
    role: str,
    scopes: list[str],
    auth: dict[str, Any] | None,
) -> VerifiedDevice:
    """Check a connect's ``device`` block in the reference's order, raising its exact failure."""
    try:
        raw = raw_public_key(device.get("publicKey"))
    except DeviceKeyError:
        # The reference derives the id first and treats an unreadable key as an id mismatch
        # (deriveDeviceIdFromPublicKey -> null), so that is what the client sees.
        raise _device_failure(
            "device identity mismatch", "device-id-mismatch", "DEVICE_AUTH_DEVICE_ID_MISMATCH"
        ) from None
    device_id = device_id_for(raw)
    if device.get("id") != device_id:
        raise _device_failure("device identity mismatch", "device-id-mismatch", "DEVICE_AUTH_DEVICE_ID_MISMATCH")
    signed_at = device.get("signedAt", 0)
    if abs(now_ms - signed_at) > DEVICE_SIGNATURE_SKEW_MS:
        raise _device_failure("device signature expired", "device-signature-stale", "DEVICE_AUTH_SIGNATURE_EXPIRED")
    nonce = (device.get("nonce") or "").strip()
    if not nonce:
        raise _device_failure("device nonce required", "device-nonce-missing", "DEVICE_AUTH_NONCE_REQUIRED")
    if nonce != challenge_nonce:
        raise _device_failure("device nonce mismatch", "device-nonce-mismatch", "DEVICE_AUTH_NONCE_MISMATCH")
    fields = SignatureFields.for_connect(device_id, client, role, scopes, signed_at, auth, nonce)
    version = verify_signature(raw, device.get("signature", ""), fields)
    if version is None:
        raise _device_failure("device signature invalid", "device-signature", "DEVICE_AUTH_SIGNATURE_INVALID")
    return VerifiedDevice(device_id=device_id, public_key=b64url_encode(raw), raw_key=raw, signature_version=version)


@attrs.frozen
class DeviceKeyPair:
    """A device's own key, used by the Python client and by tests to sign connects."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> DeviceKeyPair:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> DeviceKeyPair:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise DeviceKeyError("not an Ed25519 private key")
        return cls(key)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def raw_public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def public_key(self) -> str:
        return b64url_encode(self.raw_public_key)

    @property
    def device_id(self) -> str:
        return device_id_for(self.raw_public_key)

    def sign(self, payload: str) -> str:
        return b64url_encode(self.private_key.sign(payload.encode("utf-8")))

    def device_block(
        self,
        *,
        nonce: str,
        signed_at_ms: int,
        client: dict[str, Any],
        role: str,
        scopes: list[str],
        auth: dict[str, Any] | None,
        version: str = "v3",
    ) -> dict[str, Any]:
        """The ``device`` object of a connect request, signed for this challenge."""
        fields = SignatureFields.for_connect(self.device_id, client, role, scopes, signed_at_ms, auth, nonce)
        payload = fields.payload_v3() if version == "v3" else fields.payload_v2()
        return {
            "id": self.device_id,
            "publicKey": self.public_key,
            "signature": self.sign(payload),
            "signedAt": signed_at_ms,
            "nonce": nonce,
        }
