from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from app.notify.backoff import Backoff

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def test_delays_double_from_one_second_up_to_the_cap() -> None:
    backoff = Backoff()
    assert [backoff.delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert backoff.delay(30) == 300


def test_retry_after_is_honoured_when_longer() -> None:
    backoff = Backoff()
    assert backoff.delay(1, retry_after=30) == 30
    assert backoff.delay(6, retry_after=3) == 32


def test_it_gives_up_after_the_last_attempt() -> None:
    backoff = Backoff(max_attempts=3)
    assert backoff.next_attempt(2, NOW) == NOW + timedelta(seconds=2)
    assert backoff.next_attempt(3, NOW) is None


@given(st.integers(1, 1000), st.one_of(st.none(), st.floats(0, 3600)))
def test_delays_are_bounded_and_never_shorter_than_asked(
    attempts: int, retry_after: float | None
) -> None:
    backoff = Backoff()
    wait = backoff.delay(attempts, retry_after)
    assert 1 <= wait <= max(300, retry_after or 0)
    if retry_after is not None:
        assert wait >= retry_after
    assert backoff.delay(attempts + 1) >= backoff.delay(attempts)


def test_the_whole_schedule_outlives_half_an_hour_of_outage() -> None:
    backoff = Backoff()
    total = sum(backoff.delay(n) for n in range(1, backoff.max_attempts))
    assert 30 * 60 <= total <= 60 * 60
