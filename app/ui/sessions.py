"""Browser sessions for the campaign form, kept server-side in Redis.

A session holds only the id of the API key that signed in and a CSRF token. The browser's
cookie carries a random session id; Redis stores it under a hash of that id, so a copy of
Redis does not hand out live sessions. A new id is drawn at every sign-in and an id sent by
the browser is never adopted (no session fixation). The key is re-read from the database on
every request (see `app.ui.deps`), so revoking it ends the session at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from app.ops.ratelimit import FORM_SESSION_COOKIE

COOKIE = FORM_SESSION_COOKIE  # rate limits bucket form requests by it
PRE_COOKIE = "wavecast_ui_pre"
COOKIE_PATH = "/ui"
TTL_SECONDS = 8 * 3600
PRE_TTL_SECONDS = 30 * 60


@dataclass(frozen=True)
class UiSession:
    id: str
    key_id: uuid.UUID
    csrf: str


def _redis_key(session_id: str) -> str:
    return "wavecast:ui:session:" + hashlib.sha256(session_id.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison; an empty or missing token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


async def create(redis: Redis, key_id: uuid.UUID) -> UiSession:
    session = UiSession(id=new_token(), key_id=key_id, csrf=new_token())
    value = json.dumps({"key_id": str(key_id), "csrf": session.csrf})
    await redis.set(_redis_key(session.id), value, ex=TTL_SECONDS)
    return session


async def load(redis: Redis, session_id: str | None) -> UiSession | None:
    """The session behind a cookie value, its lifetime renewed; None when unknown or expired."""
    if not session_id or len(session_id) > 128:
        return None
    key = _redis_key(session_id)
    raw = await redis.getex(key, ex=TTL_SECONDS)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return UiSession(id=session_id, key_id=uuid.UUID(data["key_id"]), csrf=str(data["csrf"]))
    except (ValueError, KeyError, TypeError):
        await redis.delete(key)
        return None


async def delete(redis: Redis, session_id: str) -> None:
    await redis.delete(_redis_key(session_id))
