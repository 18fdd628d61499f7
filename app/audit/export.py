"""The audit export's format (NDJSON): pure, no I/O.

An export is one stretch of the hash chain with nothing left out, so that an auditor can
re-verify it without the database (`app.audit.export_check`):

- one line per event, in chain (sequence) order: the fields the hash covers, written as the
  hash sees them (`chain.stamp`, `chain.normalise`), who acted (`person_id`, `person_name`,
  `key_id`, `channel`: null on events written before people were recorded, whose
  `hash_version` 1 does not cover them), the `hash_version`, then `prev_hash` and `hash`;
- then the head line, always last: the chain's head when the export was made (sequence 0 and
  the genesis value for an empty log), the range asked for, and the first and last sequence
  exported (null when none).

A time range selects on `occurred_at` (from inclusive, to exclusive), but the chain is
ordered by `sequence`, given at commit: an event recorded just before a boundary can commit
after one recorded just after it. So an export covers every sequence from the first to the
last event in the range, and may carry a few events recorded just outside it near its
edges; a strict filter would leave holes that no verifier could tell from deletions. A range
without `from` starts at sequence 1; a range without `to` ends at the head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.audit import chain

MEDIA_TYPE = "application/x-ndjson"
EVENT_KEYS = (
    "sequence",
    "occurred_at",
    "actor",
    "action",
    "subject_type",
    "subject_id",
    "reason",
    "before",
    "after",
    "person_id",
    "person_name",
    "key_id",
    "channel",
    "hash_version",
    "prev_hash",
    "hash",
)
# Who acted, and the version that says whether the hash covers it: exports written before
# people were recorded have none of these keys (and only version 1 events).
WHO_KEYS = ("person_id", "person_name", "key_id", "channel", "hash_version")
HEAD_KEYS = ("head", "from", "to", "first_sequence", "last_sequence")


@dataclass(frozen=True)
class Plan:
    """What an export covers, fixed before its first line is written: events committed
    while it is written are past `head` and stay out of it."""

    head: chain.Head
    since: datetime | None
    until: datetime | None
    first_sequence: int | None
    last_sequence: int | None

    @property
    def count(self) -> int:
        if self.first_sequence is None or self.last_sequence is None:
            return 0
        return self.last_sequence - self.first_sequence + 1


def range_problem(since: datetime | None, until: datetime | None) -> str | None:
    """Why `to` cannot end a range starting at `from`, or None."""
    if since is not None and until is not None and until < since:
        return f"must not be earlier than from ({chain.stamp(since)})"
    return None


def plan(
    head: chain.Head,
    since: datetime | None,
    until: datetime | None,
    in_range: tuple[int, int] | None,
) -> Plan:
    """`in_range`: the lowest and highest sequence, up to the head, of the events whose
    `occurred_at` lies in the range (None when there are none)."""
    if in_range is None:
        return Plan(head, since, until, None, None)
    first = 1 if since is None else in_range[0]
    last = head.sequence if until is None else in_range[1]
    return Plan(head, since, until, first, last)


def event_line(event: chain.StoredEvent) -> bytes:
    fields = event.fields
    return _line(
        {
            "sequence": fields.sequence,
            "occurred_at": chain.stamp(fields.occurred_at),
            "actor": fields.actor,
            "action": fields.action,
            "subject_type": fields.subject_type,
            "subject_id": fields.subject_id,
            "reason": fields.reason,
            "before": chain.normalise(fields.before),
            "after": chain.normalise(fields.after),
            "person_id": fields.person_id,
            "person_name": fields.person_name,
            "key_id": fields.key_id,
            "channel": fields.channel,
            "hash_version": fields.version,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        }
    )


def head_line(export: Plan) -> bytes:
    return _line(
        {
            "head": {"sequence": export.head.sequence, "hash": export.head.hash},
            "from": None if export.since is None else chain.stamp(export.since),
            "to": None if export.until is None else chain.stamp(export.until),
            "first_sequence": export.first_sequence,
            "last_sequence": export.last_sequence,
        }
    )


def _line(document: dict[str, Any]) -> bytes:
    # Key order as written above, so the API and the CLI give the same bytes.
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode() + b"\n"
