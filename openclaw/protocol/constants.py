"""Protocol versions, limits and timings shared by the server and the client.

The values are the reference gateway's (``openclaw@2026.9.6``); clients read several of them
from ``hello-ok.policy`` and behave badly if they drift.
"""

PROTOCOL_VERSION = 4
MIN_CLIENT_PROTOCOL_VERSION = 4
MIN_NODE_PROTOCOL_VERSION = 3
MIN_PROBE_PROTOCOL_VERSION = 3

DEFAULT_PORT = 18789

MAX_PREAUTH_PAYLOAD_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 25 * 1024 * 1024
MAX_BUFFERED_BYTES = 50 * 1024 * 1024
TICK_INTERVAL_MS = 30_000
HEALTH_REFRESH_INTERVAL_MS = 60_000
HANDSHAKE_TIMEOUT_MS = 15_000
CLOSE_GRACE_MS = 1_000
CLOSE_REASON_MAX_BYTES = 120

DEVICE_SIGNATURE_SKEW_MS = 120_000
PAIRING_PENDING_TTL_MS = 5 * 60 * 1000

MAX_PENDING_HANDSHAKE_FRAMES = 15
MAX_PREAUTH_CONNECTIONS_PER_IP = 32
MAX_IN_FLIGHT_REQUESTS = 256
UNAUTHORIZED_ROLE_FLOOD_LIMIT = 10

AUTH_RATE_LIMIT_MAX_ATTEMPTS = 10
AUTH_RATE_LIMIT_WINDOW_MS = 60_000
AUTH_RATE_LIMIT_LOCKOUT_MS = 5 * 60 * 1000

ATTACHMENTS_MAX_BYTES = 20 * 1024 * 1024
ATTACHMENTS_MAX_IMAGE_BYTES = 6 * 1024 * 1024

# WebSocket close codes used by the gateway (RFC 6455 plus the 4xxx private range).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TICK_TIMEOUT = 4000
CLOSE_INVALIDATED = 4001

ROLE_OPERATOR = "operator"
ROLE_NODE = "node"
ROLES = (ROLE_OPERATOR, ROLE_NODE)

CLIENT_IDS = (
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-browser-copilot",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-linux",
    "openclaw-ios",
    "openclaw-watchos",
    "openclaw-android",
    "node-host",
    "openclaw-worker",
    "test",
    "fingerprint",
    "openclaw-probe",
)

CLIENT_MODES = ("webchat", "cli", "ui", "backend", "node", "worker", "probe", "test")

# Announced in connect.challenge (as the reference does: only this one) ...
CHALLENGE_CAPABILITIES = ("model-catalog-snapshot",)
# ... and in hello-ok features.capabilities; the reference CLI's `models list` requires the second.
SERVER_CAPABILITIES = ("model-catalog-snapshot", "published-model-catalog")

# Event subscription topics (``ConnectedClient.subscriptions``): ``sessions.changed`` goes to
# connections that called sessions.subscribe, ``session.message`` to those watching one transcript.
SESSIONS_TOPIC = "sessions"
MESSAGES_TOPIC_PREFIX = "session.messages:"


def messages_topic(session_key: str) -> str:
    """The topic ``session.message`` events for one transcript go to (sessions.messages.subscribe)."""
    return MESSAGES_TOPIC_PREFIX + session_key
