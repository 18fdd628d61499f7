"""What becomes of each claimed row: decided before any provider sees it, or from the
provider's answer. Pure functions (the clock and the settings are arguments), so every
mapping is tested directly."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from app.campaigns.models import CampaignKind
from app.delivery.ledger import Claimed, Outcome
from app.delivery.models import DeliveryStatus
from app.delivery.providers.base import STOPPED, ResultKind, SendResult
from app.delivery.timing_rules import SendTiming
from app.devices.models import DeviceStatus
from app.settings import Settings

RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 300.0


def retry_delay(attempts: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter, never sooner than the provider asked."""
    backoff: float = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2.0 ** max(0, attempts - 1))
    backoff *= random.uniform(0.8, 1.2)
    return max(backoff, retry_after or 0.0)


def pre_send_outcomes(
    campaign_kind: CampaignKind,
    rows: Sequence[Claimed],
    now: datetime,
    *,
    test_devices_only: bool,
    timing: SendTiming,
) -> tuple[list[Claimed], list[Outcome]]:
    """Split claimed rows into those to send and those decided without a provider, for the
    first reason that applies:

    - the device is no longer active: cancelled;
    - the device is not a test device, and the campaign is a test campaign or the deployment
      reaches test devices only (``Settings.test_devices_only``: outside production with a
      real provider): blocked;
    - the row must not leave now (``not_now``): its deadline has passed (expired), or its
      device is in its quiet hours (back to the queue until they end, or expired at once when
      the deadline comes first).
    """
    to_send: list[Claimed] = []
    decided: list[Outcome] = []
    for row in rows:
        if row.device_status != DeviceStatus.active:
            decided.append(
                Outcome(
                    row.delivery_id,
                    DeliveryStatus.cancelled,
                    error_code="device_inactive",
                    error_detail=f"the device is {row.device_status}",
                )
            )
            continue
        if not row.is_test_device and (test_devices_only or campaign_kind is CampaignKind.test):
            decided.append(
                Outcome(
                    row.delivery_id,
                    DeliveryStatus.blocked,
                    error_code="not_a_test_device",
                    error_detail=(
                        "a test campaign reaches only test devices"
                        if campaign_kind is CampaignKind.test
                        else "outside production a real provider reaches only test devices"
                    ),
                )
            )
            continue
        held = not_now(timing, [row], now)
        if held:
            decided += held
        else:
            to_send.append(row)
    return to_send, decided


def _expired(row: Claimed, detail: str) -> Outcome:
    return Outcome(
        row.delivery_id, DeliveryStatus.expired, error_code="expired", error_detail=detail
    )


def not_now(timing: SendTiming, rows: Sequence[Claimed], now: datetime) -> list[Outcome]:
    """The rows that must not leave at `now`, decided: past their deadline (expired); in
    their device's quiet hours (back to the queue, due when they end, not an attempt), or
    expired at once when the deadline comes first. Asked when rows are claimed and again
    right before their requests start: a row may wait for throttle tokens in between, and
    a deadline or the start of quiet hours may come meanwhile."""
    held: list[Outcome] = []
    for row in rows:
        limit = timing.deadline_of(row)
        if limit is not None and now >= limit:
            held.append(_expired(row, f"not sent by its deadline, {limit.isoformat()}"))
            continue
        quiet_end = timing.quiet_until(row.timezone, now)
        if quiet_end is None:
            continue
        if limit is not None and quiet_end >= limit:
            held.append(
                _expired(
                    row,
                    f"its deadline, {limit.isoformat()}, falls inside the device's quiet hours",
                )
            )
        else:
            held.append(
                Outcome(
                    row.delivery_id,
                    DeliveryStatus.queued,
                    next_attempt_at=quiet_end,
                    give_back=True,
                    deferred=True,
                )
            )
    return held


def outcome_of(
    result: SendResult, row: Claimed, provider: str, settings: Settings, now: datetime
) -> Outcome:
    if result.unsent and result.error_code == STOPPED:
        # Kept off the wire by a stop: not an attempt; back to the queue (or cancelled, if
        # the stop was a kill or a cancel).
        return Outcome(row.delivery_id, DeliveryStatus.queued, give_back=True)
    if result.unsent:
        # Held back by a Retry-After block before it left: not an attempt; due when the
        # block ends.
        return Outcome(
            row.delivery_id,
            DeliveryStatus.retrying,
            provider=provider,
            error_code=result.error_code,
            error_detail=result.detail,
            next_attempt_at=now + timedelta(seconds=result.retry_after or 0.0),
            give_back=True,
        )
    if result.kind is ResultKind.sent:
        return Outcome(
            row.delivery_id, DeliveryStatus.sent, provider=provider, message_id=result.message_id
        )
    if result.kind is ResultKind.invalid_token:
        return Outcome(
            row.delivery_id,
            DeliveryStatus.invalid_token,
            provider=provider,
            error_code=result.error_code,
            error_detail=result.detail,
            invalid_since=result.invalid_since,
        )
    if result.kind is ResultKind.retry:
        if row.attempts >= settings.max_attempts:
            return Outcome(
                row.delivery_id,
                DeliveryStatus.failed,
                provider=provider,
                error_code=f"retries_exhausted:{result.error_code}",
                error_detail=result.detail,
            )
        delay = retry_delay(row.attempts, result.retry_after)
        return Outcome(
            row.delivery_id,
            DeliveryStatus.retrying,
            provider=provider,
            error_code=result.error_code,
            error_detail=result.detail,
            next_attempt_at=now + timedelta(seconds=delay),
        )
    if result.kind is ResultKind.halt:
        return Outcome(
            row.delivery_id,
            DeliveryStatus.queued,
            provider=provider,
            error_code=result.error_code,
            error_detail=result.detail,
            give_back=True,
        )
    return Outcome(
        row.delivery_id,
        DeliveryStatus.failed,
        provider=provider,
        error_code=result.error_code,
        error_detail=result.detail,
    )


def give_back(row: Claimed) -> Outcome:
    """A claimed row that was never sent goes back as it was (not an attempt)."""
    return Outcome(row.delivery_id, DeliveryStatus.queued, give_back=True)
