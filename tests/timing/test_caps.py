"""Frequency caps: parsing, and the rolling-window model the Redis store is held to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.timing.caps import MAX_COUNT, MAX_WINDOW_SECONDS, FrequencyCap, admits, parse_frequency_cap

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("text", "count", "window"),
    [
        ("2/24h", 2, 86400),
        ("3/7d", 3, 7 * 86400),
        ("1/90m", 1, 5400),
        ("5/3600s", 5, 3600),
        (" 2 / 24h ", 2, 86400),
        ("2/24H", 2, 86400),
        (f"{MAX_COUNT}/90d", MAX_COUNT, MAX_WINDOW_SECONDS),
    ],
)
def test_parse_frequency_cap(text: str, count: int, window: int) -> None:
    cap = parse_frequency_cap(text)
    assert cap == FrequencyCap(count, window)
    assert parse_frequency_cap(str(cap)) == cap


@pytest.mark.parametrize("text", ["off", "OFF", " off "])
def test_off(text: str) -> None:
    assert parse_frequency_cap(text) is None


@pytest.mark.parametrize(
    "text",
    ["", "2", "2/", "/24h", "2/24", "2/24w", "2/h", "-1/24h", "1.5/24h", "2/1.5h", "2/24hh",
     "2 24h", "two/24h", "none", "0/24h", "2/0h", f"{MAX_COUNT + 1}/1h", "1/91d", "1/9999999999s"],
)  # fmt: skip
def test_parse_frequency_cap_refuses(text: str) -> None:
    with pytest.raises(ValueError, match='"2/24h"'):
        parse_frequency_cap(text)


def test_canonical_form() -> None:
    assert [str(FrequencyCap(2, w)) for w in (86400, 7200, 5400, 61, 7 * 86400)] == [
        "2/1d", "2/2h", "2/90m", "2/61s", "2/7d",
    ]  # fmt: skip


def test_admits_at_the_edges() -> None:
    cap = FrequencyCap(2, 3600)
    assert admits([], NOW, cap)
    assert admits([NOW - 10 * SECOND], NOW, cap)
    assert not admits([NOW - 10 * SECOND, NOW - 20 * SECOND], NOW, cap)
    # The window is (now - window, now]: a send exactly a window ago no longer counts ...
    assert admits([NOW - 10 * SECOND, NOW - cap.window], NOW, cap)
    # ... one a microsecond later still does.
    assert not admits([NOW - 10 * SECOND, NOW - cap.window + timedelta(microseconds=1)], NOW, cap)
    # One recorded ahead of `now` (a worker whose clock runs ahead) counts.
    assert not admits([NOW + SECOND, NOW - SECOND], NOW, cap)


caps = st.builds(FrequencyCap, st.integers(1, 4), st.integers(1, 100))
offsets = st.lists(st.integers(-300, 50), max_size=12)


@settings(max_examples=200, deadline=None)
@given(caps, offsets, st.integers(-300, 50))
def test_admits_properties(cap: FrequencyCap, history_s: list[int], extra_s: int) -> None:
    history = [NOW + s * SECOND for s in history_s]
    extra = NOW + extra_s * SECOND
    verdict = admits(history, NOW, cap)
    # One more send never turns a refusal into an admission.
    if not verdict:
        assert not admits([*history, extra], NOW, cap)
    # Sends a window or more ago do not matter.
    recent = [t for t in history if t > NOW - cap.window]
    assert admits(recent, NOW, cap) == verdict
    assert verdict == (len(recent) < cap.count)
    # Refused now, admitted once the oldest counted send leaves the window.
    if not verdict:
        oldest = sorted(recent)[len(recent) - cap.count]
        later = max(NOW, oldest + cap.window)
        assert admits(history, later, cap) == (
            sum(1 for t in history if t > later - cap.window) < cap.count
        )


@settings(max_examples=200, deadline=None)
@given(caps, st.lists(st.integers(0, 400), max_size=40))
def test_what_it_admits_never_exceeds_the_cap_in_any_window(
    cap: FrequencyCap, attempts_s: list[int]
) -> None:
    admitted: list[datetime] = []
    for at in sorted(NOW + s * SECOND for s in attempts_s):
        if admits(admitted, at, cap):
            admitted.append(at)
    # Any window of the cap's length starting at an admitted send holds at most `count`.
    for start in admitted:
        assert sum(1 for t in admitted if start <= t < start + cap.window) <= cap.count
    # And it is not stricter than that: every refused attempt had `count` sends in its window.
    for at in sorted(NOW + s * SECOND for s in attempts_s):
        if at not in admitted:
            assert sum(1 for t in admitted if at - cap.window < t <= at) >= cap.count
