"""The audit log's hash chain: pure functions, no I/O.

Each event stores `prev_hash` (the previous event's `hash`, or `GENESIS` for the first) and
`hash` = sha256 over a canonical serialisation of its own fields plus `prev_hash`, in order
of a strictly increasing `sequence`. Editing, deleting or reordering a stored row breaks the
chain at that row (or the one after it), and `verify` names the first break.

What the chain cannot show on its own is a missing tail: a log cut short, emptied, or rebuilt
from some event on still links up. A `Head` kept outside the database closes that gap: given
one, `verify` also requires the log to reach its sequence and to carry its hash there.

Versions. Version 1 (events written before people were recorded) hashes the event's own
fields; version 2 also hashes who acted: the person's id and name, the key and the channel,
so a verified log can be trusted on "who" as well as "what". Each event stores its version
and is verified by its own; a version-1 event may carry no person, key or channel (its hash
would not cover them, so they could be changed unseen). A log upgraded in place is a mixed
chain: old events keep their hashes and verify as before.

The serialisation must give the same bytes for an event before it is written and after it
is read back from PostgreSQL (JSONB) or SQLite (JSON text): JSONB keeps numbers as decimals,
so a float such as 1e20 comes back as the integer 100000000000000000000. Numbers are
therefore normalised the same way on both sides (integral floats become ints).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

FORMAT = "wavecast-audit-v1"
FORMAT_V2 = "wavecast-audit-v2"
GENESIS = "0" * 64
# The version new events are written with.
CURRENT_VERSION = 2
VERSIONS = (1, CURRENT_VERSION)


@dataclass(frozen=True)
class ChainFields:
    """What the hash covers: everything an event says, and where it stands in the chain."""

    sequence: int
    occurred_at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str | None
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    person_id: str | None = None
    person_name: str | None = None
    key_id: str | None = None
    channel: str | None = None
    # 1 unless said otherwise: what migration 0003 chained the first events with.
    version: int = 1

    @property
    def names_someone(self) -> bool:
        return any(
            v is not None for v in (self.person_id, self.person_name, self.key_id, self.channel)
        )


def normalise(value: Any) -> Any:
    """A JSON value as the hash sees it (and as an export writes it)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        exact = Decimal(repr(value))
        return int(exact) if exact == exact.to_integral_value() else value
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    raise TypeError(f"audit event fields must be JSON values, got {type(value).__name__}")


def stamp(moment: datetime) -> str:
    """A timestamp as the hash sees it: UTC, microseconds, `Z`."""
    if moment.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(fields: ChainFields, prev_hash: str) -> bytes:
    """The bytes the hash covers, by the event's version (ValueError for an unknown one)."""
    if fields.version not in VERSIONS:
        raise ValueError(f"unknown hash version {fields.version}")
    document: list[Any] = [
        FORMAT if fields.version == 1 else FORMAT_V2,
        fields.sequence,
        stamp(fields.occurred_at),
        fields.actor,
        fields.action,
        fields.subject_type,
        fields.subject_id,
        fields.reason,
        normalise(fields.before),
        normalise(fields.after),
    ]
    if fields.version >= 2:
        document += [fields.person_id, fields.person_name, fields.key_id, fields.channel]
    document.append(prev_hash)
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def digest(fields: ChainFields, prev_hash: str) -> str:
    return hashlib.sha256(canonical(fields, prev_hash)).hexdigest()


_HEAD = re.compile(r"([1-9][0-9]*):([0-9a-f]{64})")


@dataclass(frozen=True)
class Head:
    """A chain head as `verify` reports it, kept elsewhere to check the log against later."""

    sequence: int
    hash: str

    @classmethod
    def parse(cls, value: str) -> Head:
        """`SEQUENCE:HASH`, as `verify` prints it; ValueError naming that form otherwise."""
        found = _HEAD.fullmatch(value.strip().lower())
        if found is None:
            raise ValueError(
                f"{value!r} is not SEQUENCE:HASH (a sequence from 1 and a 64-digit hex hash, "
                "as `wavecast audit verify` prints them)"
            )
        return cls(int(found[1]), found[2])

    def __str__(self) -> str:
        return f"{self.sequence}:{self.hash}"


@dataclass(frozen=True)
class StoredEvent:
    id: int
    fields: ChainFields
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Break:
    """The first event at which the chain no longer holds."""

    id: int
    sequence: int
    problem: str

    def describe(self) -> str:
        return f"event id {self.id} (sequence {self.sequence}): {self.problem}"


@dataclass(frozen=True)
class Verdict:
    checked: int
    head_sequence: int
    head_hash: str
    broken: Break | None
    # Set when the chain holds but ends before the expected head (or is empty).
    cut_short: str | None = None

    @property
    def problem(self) -> str | None:
        return self.broken.describe() if self.broken is not None else self.cut_short


class Walker:
    """Checks events one at a time, in the order of their stored `sequence`, and, given an
    expected head, that the log reaches it and carries its hash there."""

    def __init__(
        self,
        expected_head: Head | None = None,
        *,
        after_sequence: int = 0,
        after_hash: str = GENESIS,
    ) -> None:
        """`after_sequence` and `after_hash`: where the walk starts, for a stretch of the log
        that does not begin at its first event (an export of a time range)."""
        self.checked = 0
        self.sequence = after_sequence
        self.hash = after_hash
        self.broken: Break | None = None
        self.expected_head = expected_head

    def feed(self, event: StoredEvent) -> bool:
        """Check one event; False (and `broken` set) at the first break."""
        problem = self._problem(event)
        if problem is not None:
            self.broken = Break(event.id, event.fields.sequence, problem)
            return False
        self.checked += 1
        self.sequence = event.fields.sequence
        self.hash = event.hash
        return True

    def _problem(self, event: StoredEvent) -> str | None:
        sequence = event.fields.sequence
        expected = self.sequence + 1
        if sequence != expected:
            if sequence > expected:
                missing = (
                    f"sequence {expected}"
                    if sequence == expected + 1
                    else f"sequences {expected}..{sequence - 1}"
                )
                return f"{missing} missing before it: events were deleted or reordered"
            return f"sequence {sequence} repeats or goes back (expected {expected}): reordered"
        if event.prev_hash != self.hash:
            after = "the genesis value" if self.sequence == 0 else f"sequence {self.sequence}"
            return (
                f"prev_hash does not match the hash of {after}: "
                "an event before it was deleted, edited or reordered"
            )
        if event.fields.version not in VERSIONS:
            return f"its hash version {event.fields.version} is unknown (known: 1, 2)"
        if event.fields.version == 1 and event.fields.names_someone:
            return (
                "it is a version 1 event but names a person, key or channel, which its hash "
                "does not cover: they were added or changed after it was written"
            )
        if digest(event.fields, event.prev_hash) != event.hash:
            return "its hash does not match its contents: the event was edited"
        head = self.expected_head
        if head is not None and sequence == head.sequence and event.hash != head.hash:
            return (
                f"its hash {event.hash} is not the expected head's {head.hash}: the log was "
                "rewritten at or before this event"
            )
        return None

    def verdict(self) -> Verdict:
        return Verdict(self.checked, self.sequence, self.hash, self.broken, self._cut_short())

    def _cut_short(self) -> str | None:
        head = self.expected_head
        if self.broken is not None or head is None or self.sequence >= head.sequence:
            return None
        where = "the log is empty" if self.sequence == 0 else f"it ends at sequence {self.sequence}"
        return (
            f"{where}, but the expected head is sequence {head.sequence} (hash {head.hash}): "
            "events were removed from its end"
        )


def verify(events: Iterable[StoredEvent], *, expected_head: Head | None = None) -> Verdict:
    walker = Walker(expected_head)
    for event in events:
        if not walker.feed(event):
            break
    return walker.verdict()
