"""What becomes of each claimed row (app.delivery.outcomes): decided before a provider sees
it, or mapped from the provider's answer. Pure: no database, no clock but the one given."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from app.campaigns.models import CampaignKind
from app.campaigns.schemas import Content
from app.db.types import utcnow
from app.delivery import outcomes
from app.delivery.ledger import Claimed
from app.delivery.models import DeliveryStatus
from app.delivery.providers.base import STOPPED, ResultKind, SendResult, stopped
from app.settings import Settings


def _row(
    attempts: int = 1,
    *,
    delivery_id: int = 7,
    status: str = "active",
    test_device: bool = False,
    age: timedelta = timedelta(0),
) -> Claimed:
    return Claimed(
        delivery_id=delivery_id,
        device_id=uuid.uuid4(),
        wave=0,
        attempts=attempts,
        created_at=utcnow() - age,
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


CONTENT = Content.model_validate({"title": "Your statement", "body": "Log in to see it."})
SHORT_LIVED = Content.model_validate(
    {"title": "Your statement", "body": "Log in to see it.", "ttl_seconds": 60}
)


@pytest.mark.parametrize("kind", list(CampaignKind))
@pytest.mark.parametrize("status", ["active", "invalid", "unregistered"])
@pytest.mark.parametrize("test_device", [False, True])
@pytest.mark.parametrize("old", [False, True])
@pytest.mark.parametrize("test_devices_only", [False, True])
def test_every_row_is_sent_or_decided_once_and_for_the_first_reason_that_applies(
    kind: CampaignKind, status: str, test_device: bool, old: bool, test_devices_only: bool
) -> None:
    row = _row(status=status, test_device=test_device, age=timedelta(minutes=5 if old else 0))
    to_send, decided = outcomes.pre_send_outcomes(
        kind, SHORT_LIVED, [row], utcnow(), test_devices_only=test_devices_only
    )
    assert len(to_send) + len(decided) == 1
    if status != "active":
        expected = (DeliveryStatus.cancelled, "device_inactive")
    elif (kind is CampaignKind.test or test_devices_only) and not test_device:
        expected = (DeliveryStatus.blocked, "not_a_test_device")
    elif old:
        expected = (DeliveryStatus.failed, "expired")
    else:
        assert to_send == [row]
        return
    assert [(d.status, d.error_code) for d in decided] == [expected]
    assert decided[0].delivery_id == row.delivery_id
    assert not decided[0].give_back


def test_rows_keep_their_order_and_content_with_ttl_0_never_expires() -> None:
    rows = [_row(delivery_id=i, age=timedelta(days=30)) for i in range(5)]
    forever = CONTENT.model_copy(update={"ttl_seconds": 0})
    to_send, decided = outcomes.pre_send_outcomes(
        CampaignKind.live, forever, rows, utcnow(), test_devices_only=False
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
