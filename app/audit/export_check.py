"""Re-verifying an audit export offline: pure, no database, one line at a time.

Every event's hash is recomputed from its fields by `chain.digest` and the links walked by
`chain.Walker`, exactly as `wavecast audit verify` walks the stored log; this module only
reads the export's lines (`app.audit.export`) and checks its ends, which the chain alone
cannot show:

- its start: an export that begins after sequence 1 begins at its first event's `prev_hash`,
  which the file cannot prove. The event before it is in an earlier export (or given as
  `--expect-head`), and must carry that hash. The head line's `first_sequence` shows events
  removed from the start;
- its end: the head line's `last_sequence` shows events removed from the end; a range with
  no `to` must end at the chain head the head line gives, with its hash;
- an expected head kept elsewhere (`wavecast audit verify` prints one): the export must hold
  that sequence with that hash, or start right after it, chaining from its hash.

The head line is written by the exporter and can be edited like any other line: it catches
mistakes and cut files, but only a head kept outside the file (or an earlier export) shows
a rewritten one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.audit import chain
from app.audit.export import EVENT_KEYS, HEAD_KEYS, WHO_KEYS

_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Failure:
    """The first bad line (or, for a file without a head line, the line that should be it)."""

    line: int
    sequence: int | None
    problem: str

    def describe(self) -> str:
        where = f"line {self.line}"
        if self.sequence is not None:
            where += f" (sequence {self.sequence})"
        return f"{where}: {self.problem}"


@dataclass(frozen=True)
class HeadLine:
    head: chain.Head
    since: datetime | None
    until: datetime | None
    first_sequence: int | None
    last_sequence: int | None


@dataclass(frozen=True)
class ExportVerdict:
    checked: int
    failure: Failure | None
    head_line: HeadLine | None = None
    # The first event's link to the event before the export, and the last event.
    starts_after: chain.Head | None = None
    last: chain.Head | None = None


class _Bad(ValueError):
    def __init__(self, problem: str, sequence: int | None = None, *, line: int = 0) -> None:
        super().__init__(problem)
        self.problem = problem
        self.sequence = sequence
        self.line = line  # 0: the line being read (at the end: the head line)


def verify_export(
    lines: Iterable[str | bytes], *, expected_head: chain.Head | None = None
) -> ExportVerdict:
    check = _Check(expected_head)
    number = 0
    for number, text in enumerate(lines, start=1):
        try:
            check.line(number, text)
        except _Bad as bad:
            return check.verdict(Failure(bad.line or number, bad.sequence, bad.problem))
    try:
        check.end()
    except _Bad as bad:
        # Without a head line, the line where it is missing.
        line = bad.line or check.head_line_number or number + 1
        return check.verdict(Failure(line, bad.sequence, bad.problem))
    return check.verdict(None)


class _Check:
    def __init__(self, expected_head: chain.Head | None) -> None:
        self.expected_head = expected_head
        self.walker: chain.Walker | None = None
        self.starts_after: chain.Head | None = None
        self.first_line = 0
        self.head_line: HeadLine | None = None
        self.head_line_number = 0

    def verdict(self, failure: Failure | None) -> ExportVerdict:
        walker = self.walker
        last = None if walker is None else chain.Head(walker.sequence, walker.hash)
        return ExportVerdict(
            checked=0 if walker is None else walker.checked,
            failure=failure,
            head_line=self.head_line,
            starts_after=self.starts_after,
            last=last,
        )

    def line(self, number: int, text: str | bytes) -> None:
        if self.head_line is not None:
            raise _Bad("a line after the head line, which must be the last")
        try:
            document = json.loads(text)
        except ValueError:
            raise _Bad("not a JSON document") from None
        if not isinstance(document, dict):
            raise _Bad("not a JSON object")
        if "head" in document:
            self.head_line = _head_line(document)
            self.head_line_number = number
            return
        self.event(number, _event(document, number))

    def event(self, number: int, event: chain.StoredEvent) -> None:
        if self.walker is None:
            self.walker = self.start(number, event)
        if not self.walker.feed(event):
            broken = self.walker.broken
            assert broken is not None
            raise _Bad(broken.problem, broken.sequence)

    def start(self, number: int, event: chain.StoredEvent) -> chain.Walker:
        sequence = event.fields.sequence
        # The first event of the log links to the genesis value; a later one to an event
        # outside this export, which it names by its prev_hash.
        after = chain.Head(sequence - 1, chain.GENESIS if sequence == 1 else event.prev_hash)
        self.starts_after = after
        self.first_line = number
        expected = self.expected_head
        if expected is not None and expected.sequence < after.sequence:
            raise _Bad(
                f"the export starts after the expected head (sequence {expected.sequence}), "
                "so it cannot show it: check that head against the export that holds it",
                sequence,
            )
        if (
            expected is not None
            and expected.sequence == after.sequence
            and event.prev_hash != expected.hash
        ):
            raise _Bad(
                f"its prev_hash {event.prev_hash} is not the expected head's "
                f"{expected.hash}: the log was rewritten at or before sequence "
                f"{expected.sequence}",
                sequence,
            )
        return chain.Walker(expected, after_sequence=after.sequence, after_hash=after.hash)

    def end(self) -> None:
        found = self.head_line
        if found is None:
            raise _Bad("no head line: the export is incomplete (cut short)")
        walker = self.walker
        first = None if self.starts_after is None else self.starts_after.sequence + 1
        last = None if walker is None else walker.sequence
        if (found.first_sequence, found.last_sequence) != (first, last):
            self.span_mismatch(found, first, last)
        head = found.head
        if walker is None:
            if head.sequence == 0 and head.hash != chain.GENESIS:
                raise _Bad("an empty log's head must carry the genesis value")
        else:
            if head.sequence < walker.sequence:
                raise _Bad(
                    f"the chain head (sequence {head.sequence}) comes before the last "
                    f"exported event (sequence {walker.sequence}): the head line was altered"
                )
            if head.sequence == walker.sequence and head.hash != walker.hash:
                raise _Bad(
                    f"the chain head's hash {head.hash} is not the last event's "
                    f"{walker.hash} (sequence {walker.sequence}): the head line was altered"
                )
            if found.until is None and head.sequence != walker.sequence:
                raise _Bad(
                    f"the range has no end, so the export must end at the chain head "
                    f"(sequence {head.sequence}), but it ends at sequence {walker.sequence}: "
                    "events were removed from its end, or the head line was altered"
                )
        expected = self.expected_head
        if expected is not None and (walker is None or walker.sequence < expected.sequence):
            ends = "holds no events" if walker is None else f"ends at sequence {last}"
            raise _Bad(
                f"the export {ends}, before the expected head (sequence {expected.sequence}), "
                "so it cannot show it: events were removed from its end, or its range ends "
                "before that head"
            )

    def span_mismatch(self, found: HeadLine, first: int | None, last: int | None) -> None:
        said = (
            "holds no events"
            if found.first_sequence is None
            else f"holds sequences {found.first_sequence}..{found.last_sequence}"
        )
        if first is None:
            raise _Bad(f"the head line says the export {said}, but it holds none")
        if found.first_sequence != first:
            raise _Bad(
                f"the head line says the export {said}, but it starts here: events were "
                "removed from its start, or the head line was altered",
                first,
                line=self.first_line,
            )
        raise _Bad(
            f"the head line says the export {said}, but it ends at sequence {last}: events "
            "were removed from its end, or the head line was altered"
        )


def _event(document: dict[str, Any], number: int) -> chain.StoredEvent:
    if "hash_version" in document:
        _keys(document, EVENT_KEYS, "an event")
    else:
        # An export written before people were recorded: version 1 events only.
        _keys(document, tuple(k for k in EVENT_KEYS if k not in WHO_KEYS), "an event")
        document = {**document, **dict.fromkeys(WHO_KEYS), "hash_version": 1}
    sequence = document["sequence"]
    if not _is_int(sequence) or sequence < 1:
        raise _Bad("sequence must be a whole number from 1")
    version = document["hash_version"]
    if not _is_int(version) or version not in chain.VERSIONS:
        raise _Bad(f"hash_version must be one of {', '.join(map(str, chain.VERSIONS))}")
    try:
        fields = chain.ChainFields(
            sequence=sequence,
            occurred_at=_moment(document["occurred_at"], "occurred_at"),
            actor=_text(document, "actor"),
            action=_text(document, "action"),
            subject_type=_text(document, "subject_type"),
            subject_id=_text_or_none(document, "subject_id"),
            reason=_text_or_none(document, "reason"),
            before=_object_or_none(document, "before"),
            after=_object_or_none(document, "after"),
            person_id=_text_or_none(document, "person_id"),
            person_name=_text_or_none(document, "person_name"),
            key_id=_text_or_none(document, "key_id"),
            channel=_text_or_none(document, "channel"),
            version=version,
        )
        return chain.StoredEvent(
            id=number,
            fields=fields,
            prev_hash=_hash(document["prev_hash"], "prev_hash"),
            hash=_hash(document["hash"], "hash"),
        )
    except _Bad as bad:
        raise _Bad(bad.problem, sequence) from None


def _head_line(document: dict[str, Any]) -> HeadLine:
    _keys(document, HEAD_KEYS, "the head line")
    head = document["head"]
    if not isinstance(head, dict) or set(head) != {"sequence", "hash"}:
        raise _Bad('head must be {"sequence": ..., "hash": ...}')
    sequence = head["sequence"]
    if not _is_int(sequence) or sequence < 0:
        raise _Bad("head.sequence must be a whole number from 0")
    first, last = document["first_sequence"], document["last_sequence"]
    if (first is None) != (last is None):
        raise _Bad("first_sequence and last_sequence must both be null or both be set")
    if first is not None and not (_is_int(first) and _is_int(last) and 1 <= first <= last):
        raise _Bad("first_sequence and last_sequence must be whole numbers, first <= last")
    return HeadLine(
        head=chain.Head(sequence, _hash(head["hash"], "head.hash")),
        since=None if document["from"] is None else _moment(document["from"], "from"),
        until=None if document["to"] is None else _moment(document["to"], "to"),
        first_sequence=first,
        last_sequence=last,
    )


def _keys(document: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in document]
    unknown = sorted(set(document) - set(keys))
    if missing:
        raise _Bad(f"{what} lacks {', '.join(missing)}")
    if unknown:
        # A field the hash does not cover could be changed unseen: refuse it.
        raise _Bad(f"{what} has unknown fields: {', '.join(unknown)}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _moment(value: object, name: str) -> datetime:
    moment = None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None:
        raise _Bad(f"{name} must be an ISO-8601 timestamp with a time zone")
    return moment


def _text(document: dict[str, Any], name: str) -> str:
    value = document[name]
    if not isinstance(value, str):
        raise _Bad(f"{name} must be a string")
    return value


def _text_or_none(document: dict[str, Any], name: str) -> str | None:
    return None if document[name] is None else _text(document, name)


def _object_or_none(document: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = document[name]
    if value is not None and not isinstance(value, dict):
        raise _Bad(f"{name} must be an object or null")
    return value


def _hash(value: object, name: str) -> str:
    if not isinstance(value, str) or _HASH.fullmatch(value) is None:
        raise _Bad(f"{name} must be 64 lowercase hex digits")
    return value
