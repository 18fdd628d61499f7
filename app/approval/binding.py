"""What a campaign's approval is bound to: pure, no I/O.

An approval approves one campaign as the approver read it: what is sent, to whom, and how
fast. Its binding is a SHA-256 over a canonical JSON of everything that decides that:

* the content, as the guard's override binding judges it (`app.guard.override.judge_content`:
  the whole stored content and the lint's findings on it), so the approval and an override
  agree on what "the same words" means;
* the kind and the audience rules (copied into the campaign when it was made or edited: a
  later change to a saved segment changes no campaign);
* the rollout: each wave's percentage and hold, the start time, the local send time, the
  wave checks; the throttle, the opens budget (max opens per second, which sets how fast
  it is sent) and the failure threshold; quiet hours, deadline and priority;
* the guard override, if any (its reason and what it covers): in production it is approved
  with the campaign, so a new override is a new approval.

Any difference in one of them is a campaign nobody approved. The name is left out: it
reaches no one. Numbers are written the same way whichever database they were read from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.audit.chain import normalise, stamp
from app.guard.override import judge_content

# Changes whenever what goes into the binding changes, so an old approval never matches a
# new scheme by accident.
# v2: the opens budget is bound (an approval given under v1 never covered it).
BINDING_SCHEME = "wavecast.approval.v2"


def number(value: Decimal | int) -> str:
    """A percentage as the binding sees it: 5, 5.0 and 5.0000 are one number."""
    return format(Decimal(value).normalize(), "f")


def binding(
    *,
    kind: str,
    content: Mapping[str, Any],
    audience_rules: Mapping[str, Any],
    waves: Sequence[tuple[Decimal, int]],
    start_at: datetime | None,
    local_time: str | None,
    checks: Sequence[Mapping[str, Any]] | None,
    throttle_per_second: int,
    max_opens_per_second: int | None,
    failure_threshold_percent: Decimal,
    quiet_hours: str | None,
    expires_at: datetime | None,
    priority: str,
    override_reason: str | None,
    override_hash: str | None,
) -> str:
    """Raises ``pydantic.ValidationError`` when ``content`` is not valid campaign content."""
    document = {
        "scheme": BINDING_SCHEME,
        "kind": kind,
        "content": judge_content(content).binding,
        "audience": normalise(dict(audience_rules)),
        "waves": [[number(percent), hold] for percent, hold in waves],
        "start_at": None if start_at is None else stamp(start_at),
        "local_time": local_time,
        "checks": normalise([dict(c) for c in checks or []]),
        "throttle_per_second": throttle_per_second,
        "max_opens_per_second": max_opens_per_second,
        "failure_threshold_percent": number(failure_threshold_percent),
        "quiet_hours": quiet_hours,
        "expires_at": None if expires_at is None else stamp(expires_at),
        "priority": priority,
        "override": None if override_reason is None else [override_reason, override_hash],
    }
    canonical = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def needed_because(
    *,
    live: bool,
    audience_size: int,
    threshold: int | None,
    production: bool,
    has_override: bool,
) -> list[str]:
    """Why a campaign needs a second person's approval to start (empty: it does not).

    `threshold` is WAVECAST_APPROVAL_REQUIRED_ABOVE (None: off). 0 means every live
    campaign, whatever its audience: an audience is counted again at each wave's release,
    so one that is empty at the start may not be empty then. In production a guard
    override needs a second person too, whatever the audience.
    """
    reasons = []
    if live and threshold is not None and (threshold == 0 or audience_size > threshold):
        reasons.append(
            "every live campaign needs a second person's approval "
            "(WAVECAST_APPROVAL_REQUIRED_ABOVE=0)"
            if threshold == 0
            else f"its audience of {audience_size} devices is above "
            f"WAVECAST_APPROVAL_REQUIRED_ABOVE={threshold}"
        )
    if production and has_override:
        reasons.append("in production a guard override needs a second person's approval")
    return reasons
