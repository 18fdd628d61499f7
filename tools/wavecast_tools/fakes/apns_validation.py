"""APNs request validation: the header and payload rules Apple answers 400/413 for.

Pure functions, no I/O. Device tokens are hex strings of 16 to 100 bytes (Apple's are 32 bytes
today but documents them as variable length). Tokens minted by :func:`make_device_token` carry an
environment marker, which lets a fake answer ``BadDeviceToken`` to a token of the other
environment, exactly as Apple does when a sandbox token is sent to production.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Literal

Environment = Literal["sandbox", "production"]

MAX_PAYLOAD_BYTES = 4096
MAX_VOIP_PAYLOAD_BYTES = 5120
MAX_COLLAPSE_ID_BYTES = 64

#: apns-push-type -> the suffix its apns-topic must carry after the bundle id.
PUSH_TYPE_TOPIC_SUFFIX: dict[str, str] = {
    "alert": "",
    "background": "",
    "controls": "",
    "widgets": ".push-type.widgets",
    "location": ".location-query",
    "voip": ".voip",
    "complication": ".complication",
    "fileprovider": ".pushkit.fileprovider",
    "mdm": "",
    "liveactivity": ".push-type.liveactivity",
    "pushtotalk": ".voip-ptt",
}

_ENV_MARKER: dict[str, str] = {"sandbox": "5a4e", "production": "5052"}
_HEX_TOKEN = re.compile(r"^(?:[0-9a-fA-F]{2}){16,100}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True, slots=True)
class Refusal:
    """An APNs error answer: HTTP status and Apple's ``reason`` string."""

    status: int
    reason: str


def make_device_token(environment: Environment, seed: int | str) -> str:
    """A deterministic 32-byte hex device token that a fake knows belongs to ``environment``."""
    digest = hashlib.sha256(f"{environment}:{seed}".encode()).hexdigest()
    return _ENV_MARKER[environment] + digest[4:]


def token_environment(token: str) -> Environment | None:
    """The environment a :func:`make_device_token` token was minted for, else ``None``."""
    marker = token[:4].lower()
    if marker == _ENV_MARKER["sandbox"]:
        return "sandbox"
    if marker == _ENV_MARKER["production"]:
        return "production"
    return None


def validate_notification(
    *,
    token: str,
    headers: dict[str, str],
    body: bytes,
    topics: frozenset[str],
    environment: Environment,
    strict_environment: bool = True,
    duplicate_header: str | None = None,
) -> Refusal | None:
    """Check a ``POST /3/device/{token}`` the way APNs does after authentication.

    Returns the refusal APNs would answer, or ``None`` when it would accept the push.
    """
    if duplicate_header is not None:
        return Refusal(400, "DuplicateHeaders")
    if not token:
        return Refusal(400, "MissingDeviceToken")
    if not _HEX_TOKEN.match(token):
        return Refusal(400, "BadDeviceToken")
    if strict_environment:
        owner = token_environment(token)
        if owner is not None and owner != environment:
            return Refusal(400, "BadDeviceToken")

    apns_id = headers.get("apns-id")
    if apns_id is not None and not _UUID.match(apns_id):
        return Refusal(400, "BadMessageId")

    push_type = headers.get("apns-push-type")
    topic = headers.get("apns-topic")
    if not topic:
        return Refusal(400, "MissingTopic")
    if push_type is None or push_type not in PUSH_TYPE_TOPIC_SUFFIX:
        return Refusal(400, "InvalidPushType")
    suffix = PUSH_TYPE_TOPIC_SUFFIX[push_type]
    bundle_id = topic[: -len(suffix)] if suffix and topic.endswith(suffix) else topic
    if bundle_id not in topics or (suffix and bundle_id == topic):
        return Refusal(400, "BadTopic")

    priority = headers.get("apns-priority", "10")
    if priority not in ("1", "5", "10"):
        return Refusal(400, "BadPriority")
    if push_type == "background" and priority == "10":
        # Apple: background notifications must use priority 5; 10 is an error.
        return Refusal(400, "BadPriority")

    expiration = headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        return Refusal(400, "BadExpirationDate")

    collapse_id = headers.get("apns-collapse-id")
    if collapse_id is not None and len(collapse_id.encode()) > MAX_COLLAPSE_ID_BYTES:
        return Refusal(400, "BadCollapseId")

    if not body:
        return Refusal(400, "PayloadEmpty")
    limit = MAX_VOIP_PAYLOAD_BYTES if push_type == "voip" else MAX_PAYLOAD_BYTES
    if len(body) > limit:
        return Refusal(413, "PayloadTooLarge")
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
        # Apple's published table has no reason for a body that is not a JSON object with an
        # "aps" dictionary; this fake answers 400 BadPayload (treat it as a permanent failure).
        return Refusal(400, "BadPayload")
    return None
