"""Frequency caps: at most ``count`` live campaigns per device in any rolling window.

``admits`` is the reference model of one decision; ``app.control.caps`` makes the same decision
atomically in Redis, across campaigns and workers, and its tests hold it to this model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

__all__ = ["MAX_COUNT", "MAX_WINDOW_SECONDS", "FrequencyCap", "admits", "parse_frequency_cap"]

# The store keeps one entry per admitted campaign per device for a window: these bound its
# memory (entries per device <= count, kept no longer than the window).
MAX_COUNT: Final = 100
MAX_WINDOW_SECONDS: Final = 90 * 24 * 3600

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CAP = re.compile(r"([0-9]{1,9})\s*/\s*([0-9]{1,9})\s*([smhd])")
_FORM = '"COUNT/WINDOW" with the window in s, m, h or d (e.g. "2/24h", "3/7d", "1/90m") or "off"'


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most ``count`` campaigns reach a device in any ``window_seconds``."""

    count: int
    window_seconds: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"a frequency cap's count must be 1 to {MAX_COUNT}, got {self.count}")
        if not 1 <= self.window_seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(
                f"a frequency cap's window must be 1 s to {MAX_WINDOW_SECONDS // 86400} d, "
                f"got {self.window_seconds} s"
            )

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_seconds)

    def __str__(self) -> str:
        for unit, seconds in sorted(_UNITS.items(), key=lambda item: -item[1]):
            if self.window_seconds % seconds == 0:
                return f"{self.count}/{self.window_seconds // seconds}{unit}"
        raise AssertionError("every window is a whole number of seconds")  # pragma: no cover


def parse_frequency_cap(text: str) -> FrequencyCap | None:
    """``"2/24h"`` → FrequencyCap(2, 86400); ``"off"`` → None."""
    stripped = text.strip().lower()
    if stripped == "off":
        return None
    match = _CAP.fullmatch(stripped)
    if match is None:
        raise ValueError(f"a frequency cap must be {_FORM}, got {text!r}")
    try:
        return FrequencyCap(int(match[1]), int(match[2]) * _UNITS[match[3]])
    except ValueError as error:
        raise ValueError(f"{error} (accepted: {_FORM})") from None


def admits(history: Sequence[datetime], now: datetime, cap: FrequencyCap) -> bool:
    """Whether a device that received campaigns at the instants ``history`` may receive one
    more at ``now``: fewer than ``cap.count`` of them fall after ``now - window``.

    Instants after ``now`` count too: they were recorded by a worker whose clock runs ahead,
    and the cap must hold across workers."""
    since = now - cap.window
    return sum(1 for instant in history if instant > since) < cap.count
