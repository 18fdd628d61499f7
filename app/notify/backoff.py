"""When the outbox tries again, and when it gives up. Pure.

Attempt n (counting from 1) that failed for a transient reason is followed by attempt n+1
after FIRST_DELAY x 2^(n-1) seconds, capped at MAX_DELAY, or after the Retry-After the
destination asked for when that is longer. After MAX_ATTEMPTS attempts a message is `failed`
(listed, never silently dropped): with these figures a message outlives about half an hour
of outage of its destination."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FIRST_DELAY = 1.0
MAX_DELAY = 300.0
MAX_ATTEMPTS = 15


@dataclass(frozen=True)
class Backoff:
    first: float = FIRST_DELAY
    cap: float = MAX_DELAY
    max_attempts: int = MAX_ATTEMPTS

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `attempts` attempts, the last of them failed."""
        exponent = max(0, min(attempts - 1, 30))
        wait: float = min(self.cap, self.first * float(2**exponent))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    def next_attempt(
        self, attempts: int, now: datetime, retry_after: float | None = None
    ) -> datetime | None:
        """When to try again after `attempts` attempts, or None: give up."""
        if attempts >= self.max_attempts:
            return None
        return now + timedelta(seconds=self.delay(attempts, retry_after))
