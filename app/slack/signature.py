"""Slack's request signatures (v0), checked on every command and button press. Pure.

Slack signs `v0:{X-Slack-Request-Timestamp}:{raw body}` with HMAC-SHA256 under the app's
signing secret and sends `v0=` + the hex digest as `X-Slack-Signature`. A request is taken
only if that matches (compared in constant time) and its timestamp is within five minutes of
now, so a captured request cannot be replayed later.

Both headers are read as text the client chose (Starlette decodes them as latin-1): their
shape is checked before anything is computed from them, so a malformed header is refused
(401) like a wrong one, never an error of ours."""

from __future__ import annotations

import hashlib
import hmac
import re

MAX_AGE_SECONDS = 5 * 60
# Slack's timestamp is Unix seconds; fifteen digits is far beyond any real one and keeps the
# arithmetic on it exact (a longer number would overflow a float).
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
# "v0=" and a hex SHA-256: anything else cannot be Slack's signature.
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


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
    if not _TIMESTAMP.fullmatch(timestamp):
        return "the request's timestamp is not a number"
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        return "the request's timestamp is more than five minutes from now"
    # Compared as bytes: compare_digest raises TypeError on a str holding anything but ASCII.
    if not _SIGNATURE.fullmatch(signature):
        return "the request's signature is not a v0 signature (v0=<64 hex digits>)"
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        return "the request's signature does not match"
    return None
