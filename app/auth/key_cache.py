"""API keys already proven, kept in the process: most requests authenticate without the
database.

Without it every API request opened a session and read its key (and the key's person) before
doing any work of its own: on `POST /v1/devices` that was half the statements and most of the
ORM work. Here a key, once it has authenticated, is remembered by the SHA-256 the database
stores for it (`app.auth.keys.digest`; the raw key is never kept), with its principal.

Revocation. The database stays the only authority. Every `revocation_seconds` (at most; on
the first request after that long) each process reads the api_key table's *watermark*: how
many keys there are, how many are revoked, and the newest creation and revocation. Keys are
never un-revoked, so any revocation or deletion changes it; when it changes, everything the
process remembered is forgotten and read again. An entry is only used while the watermark it
was stored under is current, and the watermark is read *before* the key, so a revocation
that commits between the two still changes what the entry was stored under. Hence:

    a request that starts `revocation_seconds` or more after a revocation committed is
    refused, in every API process (WAVECAST_KEY_REVOCATION_SECONDS, 1 s by default);

and in the process that revoked the key, at once: a commit that changed an ApiKey row
forgets this process's keys right away (an ORM event, below).

Every other API process learns of a revocation made through the API before it is answered:
`DELETE /v1/keys/{id}` commits, then publishes on Redis (`announce_change`), and every API
process listens for the duration of its life (`listen_for_changes`) and forgets its keys on
each message. Redis sends the message to every listener as it answers the publish, so by the time
the revoking client reads its answer the message has left for every process: a request sent
after the answer finds it already read (short of a process too busy to read its sockets in
that order). The watermark remains the bound
when a message cannot be delivered (Redis unreachable, a listener reconnecting: it forgets
everything when it subscribes again) and for revocations made elsewhere (`wavecast keys
revoke`, an edit of the database). When the watermark cannot be
read, nothing is used from memory. Failed authentications are never remembered (a flood of
made-up keys reads the database as before, and is charged to its address by the rate limit).
An entry also expires after `MAX_AGE_SECONDS`, so a person's renamed name reaches the audit
log within a minute. `revocation_seconds = 0` turns the cache off.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.auth import keys
from app.auth.models import ApiKey
from app.auth.principal import Principal
from app.redis_subscription import follow

log = logging.getLogger("wavecast.auth")

MAX_AGE_SECONDS = 60.0
# Where API key changes are announced to every API process.
CHANNEL = "wavecast:api-keys:changed"
LISTEN_RETRY_SECONDS = 1.0
LISTEN_SECONDS = 1.0
CONFIRM_SECONDS = 5.0
PING_AFTER_SECONDS = 30.0
MAX_ENTRIES = 10_000

Watermark = tuple[Any, ...]
ReadWatermark = Callable[[], Awaitable[Watermark]]
Load = Callable[[], Awaitable[Principal | None]]


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    watermark: Watermark
    stored_at: float


# Every cache of this process, for the commit hook below.
_CACHES: weakref.WeakSet[KeyCache] = weakref.WeakSet()


class KeyCache:
    def __init__(
        self,
        pepper: str,
        read_watermark: ReadWatermark,
        *,
        revocation_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pepper = pepper
        self._read_watermark = read_watermark
        self.revocation_seconds = revocation_seconds
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        # None: not read yet, unreadable, or forgotten; nothing is used from memory then.
        self._watermark: Watermark | None = None
        self._read_at = float("-inf")
        self._reading = asyncio.Lock()
        self.hits = 0
        _CACHES.add(self)

    @property
    def enabled(self) -> bool:
        return self.revocation_seconds > 0

    async def authenticate(self, raw: str, load: Load) -> Principal | None:
        """The principal behind `raw`: from memory when it authenticated under the current
        watermark, else from `load` (the database)."""
        if not self.enabled or keys.split(raw) is None:
            return await load()
        digest = keys.digest(raw, self._pepper)
        watermark = await self._current()
        entry = self._entries.get(digest)
        now = self._clock()
        if (
            entry is not None
            and watermark is not None
            and entry.watermark == watermark
            and now - entry.stored_at < MAX_AGE_SECONDS
        ):
            self.hits += 1
            return entry.principal
        principal = await load()
        if principal is not None and watermark is not None:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = _Entry(principal, watermark, now)
        return principal

    def forget(self) -> None:
        """Forget every key, and read the watermark again before remembering any."""
        self._entries.clear()
        self._watermark = None
        self._read_at = float("-inf")

    async def _current(self) -> Watermark | None:
        if self._clock() - self._read_at < self.revocation_seconds:
            return self._watermark
        async with self._reading:
            # Another request may have read it while this one waited.
            if self._clock() - self._read_at < self.revocation_seconds:
                return self._watermark
            started = self._clock()
            try:
                watermark = await self._read_watermark()
            except Exception:
                # Unknown: every request reads its key, and meets the same trouble there.
                log.warning("could not read the API keys' watermark", exc_info=True)
                self.forget()
                return None
            if watermark != self._watermark:
                self._entries.clear()
            self._watermark = watermark
            # From when the read started: what it saw may be that old.
            self._read_at = started
            return watermark


_CHANGED = "wavecast.api_keys_changed"


@event.listens_for(Session, "after_flush")
def _note_key_changes(session: Session, _context: Any) -> None:
    if any(isinstance(row, ApiKey) for row in (*session.dirty, *session.deleted)):
        session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _forget_after_key_changes(session: Session) -> None:
    # This process learns of its own revocations at once; others by `announce_change`, or
    # the watermark.
    if session.info.pop(_CHANGED, False):
        forget_all()


@event.listens_for(Session, "after_rollback")
def _nothing_changed(session: Session) -> None:
    session.info.pop(_CHANGED, None)


def forget_all() -> None:
    """Forget every key every cache of this process remembers."""
    for cache in list(_CACHES):
        cache.forget()


async def announce_change(redis: Redis) -> None:
    """Tell every API process that API keys changed; call it once the change has committed.
    Unreachable, Redis only leaves the other processes to the watermark's bound."""
    try:
        await redis.publish(CHANNEL, b"changed")
    except (RedisError, OSError):
        log.warning(
            "could not announce an API key change; other processes notice it "
            "within the key revocation bound",
            exc_info=True,
        )


async def listen_for_changes(redis: Redis) -> None:
    """Forget every remembered key on each announcement (`announce_change`), for as long as
    it runs (an API process's life). Everything is forgotten too each time the subscription
    is confirmed: what was announced while it was not listening is not missed.

    Messages are read a second at a time, below the client's socket timeout (a blocking read
    would time out every few seconds on a quiet channel), and a PING after a quiet
    PING_AFTER_SECONDS finds a connection that died without a word."""
    await follow(
        redis.pubsub,
        CHANNEL,
        on_subscribed=_forget_all_now,
        on_message=lambda _data: forget_all(),
        log=log,
        down_message=(
            "API key announcements: not subscribed, retrying (revocations made "
            "elsewhere reach this process within the key revocation bound)"
        ),
        up_message="API key announcements: listening again",
        errors=(RedisError, OSError),
        retry_first_seconds=LISTEN_RETRY_SECONDS,
        retry_max_seconds=LISTEN_RETRY_SECONDS,
        confirm_seconds=CONFIRM_SECONDS,
        listen_seconds=LISTEN_SECONDS,
        ping_after_seconds=PING_AFTER_SECONDS,
    )


async def _forget_all_now() -> None:
    # On every (re)subscription: whatever was announced while not listening is not missed.
    forget_all()
