"""Fault injection rules shared by the protocol fakes.

A rule says *which* pushes it hits (a token, a token prefix, or every push), *how often* (the next
``count`` hits, for ``seconds`` after it was added, with a ``probability``) and *what happens*: an
added ``latency``, then either the provider error named ``error`` (optionally with
``Retry-After``), the normal answer (a latency-only rule), or a connection fault (``action``):

- ``drop``   -- close the TCP connection without answering (the client sees EOF mid-request);
- ``goaway`` -- HTTP/2 GOAWAY whose ``last_stream_id`` excludes this request, then close
  (an HTTP/1.1 connection is simply closed);
- ``reset``  -- HTTP/2 RST_STREAM(INTERNAL_ERROR) on this request's stream only (an HTTP/1.1
  connection is closed).

Rules are checked in the order they were added; the first one that matches and fires decides.
A rule stops matching once its count is used up or its time is over; it stays listed (with
``applied``) until removed, so a test can assert how often it fired.

Thread safety: the rule list is replaced, never mutated in place, so a reader in another thread
always iterates a consistent list. Counters are only touched on the fake's own loop.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

FaultAction = Literal["answer", "drop", "goaway", "reset"]
_ACTIONS: frozenset[str] = frozenset(get_args(FaultAction))
_rule_ids = itertools.count(1)


def _new_rule_id() -> str:
    return f"rule-{next(_rule_ids)}"


@dataclass(slots=True)
class FaultRule:
    """One fault; see the module docstring for the semantics of each field."""

    error: str | None = None
    """A provider error name from the fake's catalogue (``UNREGISTERED``, ``Unregistered``...)."""
    token: str | None = None
    token_prefix: str | None = None
    count: int | None = None
    seconds: float | None = None
    probability: float = 1.0
    latency: float = 0.0
    retry_after: int | None = None
    action: FaultAction = "answer"
    invalid_at_ms: int | None = None
    """For an APNs 410: the ``timestamp`` the answer carries (ms since the epoch; now if unset)."""
    id: str = field(default_factory=_new_rule_id)
    applied: int = 0
    """How many requests this rule has hit so far."""
    added_monotonic: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"action must be one of {sorted(_ACTIONS)}, not {self.action!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.count is not None and self.count < 0:
            raise ValueError("count must not be negative")
        if self.latency < 0 or (self.seconds is not None and self.seconds < 0):
            raise ValueError("latency and seconds must not be negative")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must not be negative")

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.applied >= self.count

    def expired(self, now: float) -> bool:
        return self.seconds is not None and now - self.added_monotonic >= self.seconds

    def matches(self, token: str | None) -> bool:
        if self.token is not None and token != self.token:
            return False
        return self.token_prefix is None or (
            token is not None and token.startswith(self.token_prefix)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "error": self.error,
            "token": self.token,
            "token_prefix": self.token_prefix,
            "count": self.count,
            "seconds": self.seconds,
            "probability": self.probability,
            "latency": self.latency,
            "retry_after": self.retry_after,
            "action": self.action,
            "invalid_at_ms": self.invalid_at_ms,
            "applied": self.applied,
            "active": not self.exhausted and not self.expired(time.monotonic()),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from the JSON accepted by ``POST /_fake/rules``; unknown keys are errors."""
        allowed = {
            "error",
            "token",
            "token_prefix",
            "count",
            "seconds",
            "probability",
            "latency",
            "retry_after",
            "action",
            "invalid_at_ms",
            "id",
        }
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown rule fields: {sorted(unknown)}")
        kwargs: dict[str, Any] = dict(data)
        if kwargs.get("id") is None:
            kwargs.pop("id", None)
        return cls(**kwargs)


class RuleBook:
    """The ordered rules of one fake."""

    def __init__(self, known_errors: Iterable[str]) -> None:
        self._known_errors = frozenset(known_errors)
        self._rules: tuple[FaultRule, ...] = ()

    def add(self, rule: FaultRule) -> FaultRule:
        if rule.error is not None and rule.error not in self._known_errors:
            raise ValueError(
                f"unknown error {rule.error!r}; known: {', '.join(sorted(self._known_errors))}"
            )
        if rule.error is None and rule.action == "answer" and rule.latency == 0:
            raise ValueError("a rule needs an error, a latency or a connection action")
        rule.added_monotonic = time.monotonic()
        self._rules = (*self._rules, rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self._rules)
        self._rules = tuple(r for r in self._rules if r.id != rule_id)
        return len(self._rules) != before

    def clear(self) -> None:
        self._rules = ()

    def rules(self) -> tuple[FaultRule, ...]:
        return self._rules

    def pick(self, token: str | None) -> FaultRule | None:
        """The rule that fires for a push to ``token``, counting the hit; ``None`` if none does.

        Exhausted/expired rules are skipped, not deleted, so their ``applied`` stays visible.
        """
        rules = self._rules
        if not rules:  # the benchmark path: no rules, no clock read
            return None
        now = time.monotonic()
        for rule in rules:
            if rule.exhausted or rule.expired(now) or not rule.matches(token):
                continue
            if rule.probability < 1.0 and random.random() >= rule.probability:
                continue
            rule.applied += 1
            return rule
        return None
