"""Slack's request signatures (v0), checked on every command and button press. Pure.

Slack signs `v0:{X-Slack-Request-Timestamp}:{raw body}` with HMAC-SHA256 under the app's
signing secret and sends `v0=` + the hex digest as `X-Slack-Signature`. A request is taken
only if that matches (compared in constant time) and its timestamp is within five minutes of
now, so a captured request cannot be replayed later."""

from __future__ import annotations

import hashlib
import hmac

MAX_AGE_SECONDS = 5 * 60


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def problem(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, *, now: float
) -> str | None:
    """None when the request is Slack's, else why it is refused."""
    if not secret:
        return "Slack's signing secret is not configured (WAVECAST_SLACK_SIGNING_SECRET)"
    if not timestamp or not signature:
        return "the request is not signed (X-Slack-Request-Timestamp, X-Slack-Signature)"
    try:
        moment = int(timestamp)
    except ValueError:
        return "the request's timestamp is not a number"
    if abs(now - moment) > MAX_AGE_SECONDS:
        return "the request's timestamp is more than five minutes from now"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        return "the request's signature does not match"
    return None
