"""A batch's admission: gate, throttle and permit in one Redis round trip.

Before a batch's requests may start, three things are asked of Redis: are the grants open
(the kill switch's fast path, `gate`), how many of its sends may leave and when (the
campaign's rate and the provider's cap, `throttle`), and a permit to start them under
(`gate`, `fence`). Asked one after another that was four calls a batch; `admit.lua` asks
them in one atomic script, built from `gate.lua` and `throttle.lua` themselves (each wrapped
as a Lua function), so there is one copy of their rules.

What it keeps of each:
- nothing is reserved and no permit is taken while a grant is closed or missing (a Redis that
  lost its data admits nothing); a Redis that cannot be reached raises, and nothing is sent;
- the reservation is the throttle's batched `reserve` on every scope at once: sized in Redis
  at that moment by the tightest rate, refused as a whole (`RateUnknown`, `RatePaused`), never
  granted across a provider's Retry-After block (`n == 0`, wait and ask again);
- the permit is taken only when the reserved sends are due within `lead` seconds. A permit
  holds up every stop until it is released, so a batch that must first wait longer for its
  turn takes its permit later, on its own (`GateWatch.permit`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from app.control.gate import GLOBAL_KEY, PERMITS_KEY, GateClosed, Refusal, campaign_key
from app.control.throttle import Grant, Throttle, grant_of, rate_of
from app.control.throttle_math import DEFAULT_WINDOW_FRACTION

_HERE = Path(__file__).parent


def _as_function(name: str, source: str) -> str:
    # A script's KEYS and ARGV become the function's parameters; its returns, the function's.
    return f"local function {name}(KEYS, ARGV)\n{source}\nend\n"


SCRIPT = (
    _as_function("gate", (_HERE / "gate.lua").read_text(encoding="utf-8"))
    + _as_function("throttle", (_HERE / "throttle.lua").read_text(encoding="utf-8"))
    + (_HERE / "admit.lua").read_text(encoding="utf-8")
)


@dataclass(frozen=True, slots=True)
class Admission:
    grant: Grant
    """The sends reserved (`n`, possibly fewer than asked; 0 while a scope is blocked) and
    how long to wait before they leave."""
    permit: str | None
    """The gate permit taken for them, or None when they are not due within the lead (or
    nothing was reserved): then the caller takes one itself before they leave."""
    asked: float
    """`time.monotonic()` when the admission was asked: a permit's fence counts from here."""
    rate: float | None
    """The campaign's rate (the first scope's) as the reservation read it; None = unlimited."""


class Admit:
    """Admissions for one process (`Control.admit`)."""

    def __init__(self, redis: Redis, throttle: Throttle) -> None:
        self._throttle = throttle
        self._script = redis.register_script(SCRIPT)

    async def __call__(
        self,
        campaign_id: uuid.UUID,
        scopes: Sequence[str],
        want: int,
        *,
        max_batch: int,
        lead: float,
        permit_seconds: float,
        window_fraction: float = DEFAULT_WINDOW_FRACTION,
    ) -> Admission:
        """Reserve up to `want` sends on `scopes` (the campaign's first) under open grants.

        Raises GateClosed, RateUnknown or RatePaused with nothing reserved and no permit
        taken, and Redis errors as they are."""
        throttle_keys, throttle_args = self._throttle.reservation(
            scopes, want, batched=True, max_batch=max_batch, window_fraction=window_fraction
        )
        permit = uuid.uuid4().hex
        asked = time.monotonic()
        reply = await self._script(
            keys=[GLOBAL_KEY, campaign_key(campaign_id), PERMITS_KEY, *throttle_keys],
            args=[
                str(campaign_id),
                permit,
                int(permit_seconds * 1000),
                repr(float(lead)),
                *throttle_args[1:],
            ],
        )
        status = _text(reply[0])
        if status == "closed":
            raise GateClosed(Refusal(int(_text(reply[1]))))
        grant = grant_of(scopes, reply)
        if status != "ok":
            return Admission(grant, None, asked, None)
        taken, raw_rate = _text(reply[5]), reply[6]
        return Admission(
            grant,
            permit if taken == "1" else None,
            asked,
            rate_of(raw_rate) if _text(raw_rate) else None,
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
