"""What becomes of each claimed row (app.delivery.outcomes): decided before a provider sees
it, or mapped from the provider's answer. Pure: no database, no clock but the one given."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.campaigns.models import CampaignKind
from app.db.types import utcnow
from app.delivery import outcomes
from app.delivery.ledger import Claimed
from app.delivery.models import DeliveryStatus
from app.delivery.providers.base import STOPPED, ResultKind, SendResult, stopped
from app.delivery.timing_rules import SendTiming
from app.settings import Settings
from app.timing.schedule import QuietHours


def _row(
    attempts: int = 1,
    *,
    delivery_id: int = 7,
    status: str = "active",
    test_device: bool = False,
    age: timedelta = timedelta(0),
    created_at: datetime | None = None,
) -> Claimed:
    return Claimed(
        delivery_id=delivery_id,
        device_id=uuid.uuid4(),
        wave=0,
        attempts=attempts,
        created_at=created_at or utcnow() - age,
        token="t",
        platform="android",
        locale=None,
        apns_environment=None,
        is_test_device=test_device,
        device_status=status,
    )


@pytest.mark.parametrize(
    ("result", "status", "give_back", "due"),
    [
        (SendResult(7, ResultKind.sent, message_id="m"), DeliveryStatus.sent, False, False),
        (stopped(7), DeliveryStatus.queued, True, False),
        (
            SendResult(7, ResultKind.retry, error_code="HELD", retry_after=2.0, unsent=True),
            DeliveryStatus.retrying,
            True,
            True,
        ),
        (
            SendResult(7, ResultKind.retry, error_code="UNAVAILABLE"),
            DeliveryStatus.retrying,
            False,
            True,
        ),
        (SendResult(7, ResultKind.invalid_token), DeliveryStatus.invalid_token, False, False),
        (SendResult(7, ResultKind.failed), DeliveryStatus.failed, False, False),
        (SendResult(7, ResultKind.halt), DeliveryStatus.queued, True, False),
    ],
)
def test_each_provider_answer_maps_to_one_outcome(
    result: SendResult, status: DeliveryStatus, give_back: bool, due: bool
) -> None:
    outcome = outcomes.outcome_of(result, _row(), "fcm", _settings(), utcnow())
    assert outcome.status is status
    assert outcome.give_back is give_back
    assert (outcome.next_attempt_at is not None) is due


def test_a_stopped_request_is_never_counted_as_an_attempt() -> None:
    result = stopped(7)
    assert result.unsent and result.error_code == STOPPED
    outcome = outcomes.outcome_of(result, _row(attempts=5), "apns", _settings(), utcnow())
    assert outcome.give_back and outcome.next_attempt_at is None


def test_retries_end_after_the_last_attempt() -> None:
    settings = _settings()
    result = SendResult(7, ResultKind.retry, error_code="UNAVAILABLE")
    row = _row(attempts=settings.max_attempts)
    last = outcomes.outcome_of(result, row, "fcm", settings, utcnow())
    assert last.status is DeliveryStatus.failed
    assert last.error_code == "retries_exhausted:UNAVAILABLE"


@pytest.mark.parametrize("attempts", range(1, 12))
def test_retry_delays_double_within_jitter_and_honour_retry_after(attempts: int) -> None:
    base = min(outcomes.RETRY_MAX_SECONDS, outcomes.RETRY_BASE_SECONDS * 2 ** (attempts - 1))
    for _ in range(50):
        delay = outcomes.retry_delay(attempts, None)
        assert base * 0.8 <= delay <= base * 1.2
    assert outcomes.retry_delay(attempts, 1000.0) == 1000.0


def _settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


SHORT_LIVED = SendTiming(
    ttl_seconds=60, expires_at=None, quiet=None, default_zone=ZoneInfo("UTC"), cap=None
)
FOREVER = SendTiming(
    ttl_seconds=0, expires_at=None, quiet=None, default_zone=ZoneInfo("UTC"), cap=None
)


@pytest.mark.parametrize("kind", list(CampaignKind))
@pytest.mark.parametrize("status", ["active", "invalid", "unregistered"])
@pytest.mark.parametrize("test_device", [False, True])
@pytest.mark.parametrize("old", [False, True])
@pytest.mark.parametrize("test_devices_only", [False, True])
@pytest.mark.parametrize("quiet", [False, True])
def test_every_row_is_sent_or_decided_once_and_for_the_first_reason_that_applies(
    kind: CampaignKind,
    status: str,
    test_device: bool,
    old: bool,
    test_devices_only: bool,
    quiet: bool,
) -> None:
    now = utcnow()
    row = _row(status=status, test_device=test_device, age=timedelta(minutes=5 if old else 0))
    # A window around now in the device's zone (UTC here), ending in 30 minutes.
    window = QuietHours(
        start=(now - timedelta(hours=1)).time().replace(second=0, microsecond=0),
        end=(now + timedelta(minutes=30)).time().replace(second=0, microsecond=0),
    )
    timing = dataclasses.replace(SHORT_LIVED, quiet=window if quiet else None)
    to_send, decided = outcomes.pre_send_outcomes(
        kind, [row], now, test_devices_only=test_devices_only, timing=timing
    )
    assert len(to_send) + len(decided) == 1
    if status != "active":
        expected = (DeliveryStatus.cancelled, "device_inactive")
    elif (kind is CampaignKind.test or test_devices_only) and not test_device:
        expected = (DeliveryStatus.blocked, "not_a_test_device")
    elif old:
        expected = (DeliveryStatus.expired, "expired")
    elif quiet:
        # The window ends after the row's 60 s deadline: it would only ever expire waiting.
        expected = (DeliveryStatus.expired, "expired")
    else:
        assert to_send == [row]
        return
    assert [(d.status, d.error_code) for d in decided] == [expected]
    assert decided[0].delivery_id == row.delivery_id
    assert not decided[0].give_back


def test_a_row_in_quiet_hours_waits_for_their_end_unless_its_deadline_comes_first() -> None:
    now = datetime(2026, 12, 6, 22, 15, tzinfo=UTC)
    window = QuietHours(start=time(21, 0), end=time(8, 0))
    row = _row(created_at=now - timedelta(minutes=1))
    warsaw = dataclasses.replace(row, timezone="Europe/Warsaw")  # 23:15 there
    tokyo = dataclasses.replace(row, delivery_id=8, timezone="Asia/Tokyo")  # 07:15 there
    auckland = dataclasses.replace(row, delivery_id=9, timezone="Pacific/Auckland")  # 11:15
    timing = dataclasses.replace(FOREVER, quiet=window)
    to_send, decided = outcomes.pre_send_outcomes(
        CampaignKind.live, [warsaw, tokyo, auckland], now, test_devices_only=False, timing=timing
    )
    assert to_send == [auckland]
    waits = {d.delivery_id: d for d in decided}
    assert all(d.give_back and d.deferred and d.status is DeliveryStatus.queued for d in decided)
    # 08:00 local: Warsaw is UTC+1 in December, Tokyo UTC+9.
    assert waits[warsaw.delivery_id].next_attempt_at == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    assert waits[tokyo.delivery_id].next_attempt_at == datetime(2026, 12, 6, 23, 0, tzinfo=UTC)

    # A deadline before the window ends: expired at once, never sent late.
    soon = dataclasses.replace(timing, expires_at=now + timedelta(hours=2))
    _, decided = outcomes.pre_send_outcomes(
        CampaignKind.live, [warsaw, tokyo], now, test_devices_only=False, timing=soon
    )
    statuses = {d.delivery_id: d.status for d in decided}
    assert statuses == {
        warsaw.delivery_id: DeliveryStatus.expired,
        tokyo.delivery_id: DeliveryStatus.queued,
    }


def test_rows_keep_their_order_and_content_with_ttl_0_never_expires() -> None:
    rows = [_row(delivery_id=i, age=timedelta(days=30)) for i in range(5)]
    to_send, decided = outcomes.pre_send_outcomes(
        CampaignKind.live, rows, utcnow(), test_devices_only=False, timing=FOREVER
    )
    assert [r.delivery_id for r in to_send] == [0, 1, 2, 3, 4]
    assert decided == []


def test_a_given_back_row_is_queued_and_not_an_attempt() -> None:
    back = outcomes.give_back(_row())
    assert (back.status, back.give_back, back.next_attempt_at) == (
        DeliveryStatus.queued,
        True,
        None,
    )


def test_a_local_time_rows_time_to_live_counts_from_its_local_instant() -> None:
    """Released at midnight UTC with a local time of 09:30: a New York device is due at
    14:30 UTC, and its hour to live runs from then, not from the release."""
    released = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    row = dataclasses.replace(
        _row(created_at=released), timezone="America/New_York", device_status="active"
    )
    timing = dataclasses.replace(
        SHORT_LIVED, ttl_seconds=3600, local_time=time(9, 30), released={0: released}
    )
    assert timing.meant_to_leave(row) == datetime(2026, 12, 7, 14, 30, tzinfo=UTC)
    at = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
    to_send, decided = outcomes.pre_send_outcomes(
        CampaignKind.live, [row], at, test_devices_only=False, timing=timing
    )
    assert to_send == [row] and decided == []
    late = at + timedelta(hours=1)
    to_send, decided = outcomes.pre_send_outcomes(
        CampaignKind.live, [row], late, test_devices_only=False, timing=timing
    )
    assert to_send == [] and [d.status for d in decided] == [DeliveryStatus.expired]
