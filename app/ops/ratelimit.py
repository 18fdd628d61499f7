"""API rate limits, shared by every API process through Redis.

A request is charged to exactly one bucket. A request carrying a well-formed API key is
charged to its key only once the key has authenticated (`charge_key`): key prefixes are not
secret (the audit log shows them), so choosing the bucket from the prefix alone let a flood of
made-up keys with a victim's prefix lock the victim out. A key that fails authentication is
charged to its address (`charge_failed_auth`), so spraying made-up keys is limited per
address, and a keyed request that never reaches authentication (an unknown path) is charged to
its address afterwards. Form requests carrying a session cookie have a bucket per session;
everything else is charged to its address before it is handled. `/healthz`, `/readyz` and
`/metrics` are never limited. Over the limit: 429 problem+json with Retry-After.

The stops (POST kill, pause and cancel of a campaign, and engaging the kill switch) of a key
holding the `kill` scope are charged to a bucket of their own (`stop:<key>`): no other
traffic, not even the same key's, can use up the capacity an on-call engineer needs during
an incident.

When Redis cannot be reached, the limit is kept by each API process on its own, with the
same arithmetic (`ratelimit_math`): requests are neither refused nor failed because the
shared counter is missing, and one client still cannot exhaust a process. The shared limit
is then at most the limit times the number of API processes; it is restored as soon as
Redis answers again. Reads and writes are treated alike here: the stops must get through
during an incident, and every other write that needs Redis fails closed on its own.

Leases. A round trip to Redis per request cost an API process a tenth of its CPU, so a
process takes a bucket's capacity from Redis several requests at a time when the limit is
high enough, and admits them from memory: a *lease* of up to `rate x LEASE_SECONDS` requests
(25 at the default 500/s; below 40/s a lease is one request, as before, and every request
makes its own round trip). Granting n is charged in Redis at once, exactly as n requests
arriving together (`ratelimit_math.take`), so no process admits a request the shared bucket
has not counted. A lease's requests are admitted only within LEASE_SECONDS (0.05 s) of when it
was asked for; what is left then is dropped, never given back. So, with N API processes:

    over any interval of T seconds, the requests admitted for one bucket by all processes
    together are at most burst + rate x (T + LEASE_SECONDS): the shared limit holds, and
    can be exceeded by no more than 0.05 s worth of the rate (2.5% of the 2 s burst);

    a bucket is refused early by at most the requests leased but not yet used, at most
    N x rate x LEASE_SECONDS; what a lease dropped unused was counted as spent, which
    delays a client at its limit by at most LEASE_SECONDS per process.

A lease starts at one request and doubles each time one is used up before it expires (down
again to what was used when one expires with some left), so a client sending now and then
takes one request per round trip, exactly as without leases; only a busy key amortises.
Requests of one key waiting for a lease wait for the same round trip, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import Scope

from app.auth import keys
from app.errors import FieldError, Problem
from app.ops.metrics import RATE_LIMIT_FALLBACK, RATE_LIMITED
from app.ops.ratelimit_math import burst_for, gcra

log = logging.getLogger("wavecast.ratelimit")

_LUA = Path(__file__).with_name("ratelimit.lua").read_text(encoding="utf-8")
# The form's session cookie (app.ui.sessions uses this name).
FORM_SESSION_COOKIE = "wavecast_ui"
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
BURST_SECONDS = 2.0
# After Redis fails, the next attempt waits this long: a dead Redis must not add its connect
# timeout to every request.
REDIS_RETRY_SECONDS = 1.0
_LOCAL_MAX_BUCKETS = 50_000
# How long a lease's requests may be admitted after it was asked for (see the module's text).
LEASE_SECONDS = 0.05
# Where the middleware leaves a keyed request's pending charge for `charge_key`.
PENDING = "wavecast.ratelimit.pending"
# The stop endpoints whose capacity is reserved for keys holding the `kill` scope.
_STOP_PATH = re.compile(r"/v1/campaigns/[^/]+/(?:kill|pause|cancel)|/v1/kill-switch")


@dataclass(slots=True)
class _Lease:
    """Requests of one bucket this process took from Redis and may still admit."""

    left: int = 0
    size: int = 0
    expires: float = float("-inf")  # monotonic
    lock: asyncio.Lock | None = None


class Limiter:
    def __init__(self, redis: Redis, rate: float, *, prefix: str = "wavecast:ratelimit") -> None:
        self.rate = rate
        self.enabled = rate > 0
        self.interval = 1.0 / rate if self.enabled else 0.0
        self.burst = burst_for(rate, BURST_SECONDS) if self.enabled else 0
        self.max_lease = max(1, min(self.burst, int(rate * LEASE_SECONDS)))
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_LUA)
        self._local: dict[str, float] = {}
        self._leases: dict[str, _Lease] = {}
        self._redis_down_until = 0.0
        self.round_trips = 0

    async def check(self, bucket: str) -> float | None:
        """None when the request may go on, else the seconds to wait before retrying."""
        if not self.enabled:
            return None
        if time.monotonic() >= self._redis_down_until:
            try:
                if self.max_lease == 1:
                    granted, retry = await self._take(bucket, 1)
                    return None if granted else retry
                return await self._from_lease(bucket)
            except (RedisError, OSError) as exc:
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                self._leases.clear()
                log.warning(
                    "rate limit: Redis unreachable, limiting in this process",
                    extra={"error": type(exc).__name__},
                )
        RATE_LIMIT_FALLBACK.inc()
        return self._check_locally(bucket)

    async def _take(self, bucket: str, wanted: int) -> tuple[int, float]:
        self.round_trips += 1
        granted, retry = await self._script(
            keys=[f"{self._prefix}:{bucket}"], args=[repr(self.interval), self.burst, wanted]
        )
        return int(granted), float(retry)

    async def _from_lease(self, bucket: str) -> float | None:
        lease = self._leases.get(bucket)
        if lease is None:
            if len(self._leases) > _LOCAL_MAX_BUCKETS:
                self._forget_spent_leases()
            lease = self._leases[bucket] = _Lease(lock=asyncio.Lock())
        if lease.left > 0 and time.monotonic() < lease.expires:
            lease.left -= 1
            return None
        assert lease.lock is not None
        async with lease.lock:
            # Another request of this bucket may have renewed it while this one waited.
            asked = time.monotonic()
            if lease.left > 0 and asked < lease.expires:
                lease.left -= 1
                return None
            if asked < lease.expires:  # used up in time: the bucket is busy
                wanted = min(self.max_lease, max(1, lease.size * 2))
            else:  # expired: ask for what was used
                wanted = max(1, lease.size - lease.left)
            granted, retry = await self._take(bucket, wanted)
            if not granted:
                lease.left, lease.size, lease.expires = 0, 1, float("-inf")
                return retry
            lease.left, lease.size, lease.expires = granted - 1, granted, asked + LEASE_SECONDS
            return None

    def _forget_spent_leases(self) -> None:
        now = time.monotonic()
        self._leases = {
            bucket: lease
            for bucket, lease in self._leases.items()
            if lease.expires > now or (lease.lock is not None and lease.lock.locked())
        }

    def _check_locally(self, bucket: str) -> float | None:
        now = time.time()
        if len(self._local) > _LOCAL_MAX_BUCKETS:
            self._local = {k: tat for k, tat in self._local.items() if tat > now}
        decision = gcra(self._local.get(bucket, 0.0), now, self.interval, self.burst)
        if not decision.allowed:
            return decision.retry_after
        self._local[bucket] = decision.tat
        return None


def bucket_for(scope: Scope) -> str | None:
    """`ui:<hash>` for a form request carrying a session cookie, None for an API request
    carrying a well-formed key (charged once the key authenticates), else `addr:<client>`.

    Operators behind one proxy share an address; their sessions must not share a bucket with
    each other or with anonymous traffic, or a flood could refuse an operator's stop. A made-up
    cookie buys nothing: the form charges the address for every session it rejects."""
    if scope["path"].startswith("/ui"):
        session = _cookie(scope, FORM_SESSION_COOKIE)
        if session:
            return "ui:" + hashlib.sha256(session.encode()).hexdigest()[:32]
        return address_bucket(scope)
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, raw = value.decode("latin-1").partition(" ")
            well_formed = scheme.lower() == "bearer" and keys.split(raw.strip()) is not None
            if well_formed and scope["path"].startswith("/v1/"):
                return None
            break
    return address_bucket(scope)


def is_stop(scope: Scope) -> bool:
    return scope["method"] == "POST" and _STOP_PATH.fullmatch(scope["path"]) is not None


@dataclass
class Pending:
    """A keyed API request not charged yet: authentication charges it (`charge_key`,
    `charge_failed_auth`); `app.ops.edge.Edge` charges its address afterwards if not."""

    charged: bool = False


def _cookie(scope: Scope, wanted: str) -> str | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            jar = SimpleCookie()
            with contextlib.suppress(CookieError):
                jar.load(value.decode("latin-1"))
            if wanted in jar:
                return jar[wanted].value
    return None


def address_bucket(scope: Scope) -> str:
    client = scope.get("client")
    return f"addr:{client[0] if client else 'unknown'}"


def too_many(retry_after: float, bucket: str) -> Problem:
    seconds = max(1, math.ceil(retry_after))
    by_key = bucket.startswith(("key:", "stop:"))
    return Problem(
        429,
        "Too many requests",
        f"the rate limit for this {'API key' if by_key else 'client address'} is exceeded; "
        f"retry after {seconds} s",
        errors=[FieldError("header.authorization" if by_key else "client", "rate limit exceeded")],
        headers={"Retry-After": str(seconds)},
    )


async def charge_key(scope: Scope, key_id: uuid.UUID, *, may_stop: bool) -> None:
    """Charge an authenticated key's request to its key, or to its stop bucket when it is a
    stop and `may_stop` (the key holds `kill`); raise the 429 when over the limit."""
    pending = scope.get(PENDING)
    limiter = limiter_of(scope)
    if not isinstance(pending, Pending) or pending.charged or limiter is None:
        return
    pending.charged = True
    bucket = f"{'stop' if may_stop and is_stop(scope) else 'key'}:{key_id}"
    await _charge(limiter, bucket)


async def charge_failed_auth(scope: Scope) -> None:
    """Count a request whose key (or form session) failed authentication against its address."""
    limiter = limiter_of(scope)
    if limiter is None or not limiter.enabled:
        return
    pending = scope.get(PENDING)
    if isinstance(pending, Pending):
        if pending.charged:
            return
        pending.charged = True
    await _charge(limiter, address_bucket(scope))


async def _charge(limiter: Limiter, bucket: str) -> None:
    retry_after = await limiter.check(bucket)
    if retry_after is not None:
        RATE_LIMITED.labels(bucket.split(":", 1)[0]).inc()
        raise too_many(retry_after, bucket)


def limiter_of(scope: Scope) -> Limiter | None:
    """The application's limiter (`app.state.rate_limiter`, built with its Redis client)."""
    limiter: Limiter | None = getattr(scope["app"].state, "rate_limiter", None)
    return limiter


def exempt(path: str) -> bool:
    # The form's own stylesheet and script, and the API pages' bundles, are static files of
    # this service.
    return path in EXEMPT_PATHS or path.startswith(("/ui/static/", "/docs/assets/"))
