"""A batch of engagement reports → checked events and rejections by index (pure, no I/O).

The body is a JSON array or NDJSON (one object a line) of `{ref, type, at?}`. One bad entry
costs only that entry: it is reported with its index (its position in the array, or its line
number minus one in NDJSON, blank lines counted) and every other entry is kept.

Checked by hand rather than by a model: this runs for every event of every batch, and at
tens of thousands of events a second the model's cost is most of the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from app.events.models import EventType
from app.instants import earlier_by

# Reports per request; at ~70 bytes an event this fits the default body limit (1 MiB) with
# room for longer timestamps and extra whitespace. More is refused as a whole (413).
MAX_EVENTS = 10_000
# A device's clock may run ahead a little; a report further in the future is refused.
MAX_AHEAD = timedelta(minutes=5)
# Nothing happens to a push before its delivery is made (a wave's release makes its rows),
# but a report may say a little earlier: a phone's clock may run a few minutes behind ours. A
# report further before its delivery's creation cannot be true and is refused; reads ignore
# such times stored earlier. The bound is the creation, not the send: a push re-sent after a
# connection was lost (it may have reached the phone the first time) records the later send,
# and an open of the first copy is true.
MAX_BEHIND = timedelta(minutes=5)
MAX_REF = 2**63 - 1
TYPES = frozenset(EventType)
FIELDS = frozenset({"ref", "type", "at"})


class BodyError(ValueError):
    """The body as a whole is not a batch (empty, not an array, too many entries)."""

    def __init__(self, detail: str, *, too_large: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.too_large = too_large


@dataclass
class Parsed:
    indexes: list[int] = field(default_factory=list)
    refs: list[int] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    ats: list[datetime] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.refs)


def entries(body: bytes, *, ndjson: bool) -> list[tuple[int, object]]:
    """The batch's entries with their indexes; an entry that is not JSON is `_NOT_JSON`."""
    if not body.strip():
        raise BodyError("the body is empty: send a JSON array or NDJSON of events")
    if ndjson:
        found: list[tuple[int, object]] = []
        for index, line in enumerate(body.split(b"\n")):
            if not line.strip():
                continue
            if len(found) >= MAX_EVENTS:
                raise _too_many()
            try:
                found.append((index, orjson.loads(line)))
            except orjson.JSONDecodeError:
                found.append((index, _NOT_JSON))
        return found
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"the body is not JSON: {exc}") from None
    if not isinstance(value, list):
        raise BodyError("the body must be a JSON array of events (or NDJSON, one a line)")
    if len(value) > MAX_EVENTS:
        raise _too_many()
    return list(enumerate(value))


def _too_many() -> BodyError:
    return BodyError(f"at most {MAX_EVENTS} events per request", too_large=True)


class _NotJson:
    pass


_NOT_JSON = _NotJson()


def check(body: bytes, *, ndjson: bool, now: datetime) -> Parsed:
    """Raises `BodyError` for a body that is not a batch at all; otherwise every entry is
    either kept or rejected with its index."""
    parsed = Parsed()
    latest = now + MAX_AHEAD
    for index, entry in entries(body, ndjson=ndjson):
        error = _check_one(entry, parsed, index, now, latest)
        if error is not None:
            parsed.rejected.append((index, error))
    return parsed


def _check_one(
    entry: object, parsed: Parsed, index: int, now: datetime, latest: datetime
) -> str | None:
    if entry is _NOT_JSON:
        return "not JSON"
    if not isinstance(entry, dict):
        return "an event must be an object {ref, type, at?}"
    extra = entry.keys() - FIELDS
    if extra:
        return f"unknown field {sorted(extra)[0]!r} (an event has ref, type and at)"
    ref = _ref(entry.get("ref"))
    if ref is None:
        return "ref: the push's wavecast_ref (a positive integer, or its digits as a string)"
    kind = entry.get("type")
    if kind not in TYPES:
        return "type: one of received, opened, converted"
    raw_at = entry.get("at")
    if raw_at is None:
        at = now
    else:
        at_or_error = _at(raw_at, latest)
        if isinstance(at_or_error, str):
            return at_or_error
        at = at_or_error
    parsed.indexes.append(index)
    parsed.refs.append(ref)
    parsed.types.append(str(kind))
    parsed.ats.append(at)
    return None


def _ref(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, int) and 0 < value <= MAX_REF:
        return value
    return None


def _at(value: object, latest: datetime) -> datetime | str:
    if not isinstance(value, str):
        return "at: an ISO-8601 timestamp with its offset, e.g. 2026-12-06T08:00:00Z"
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return "at: not an ISO-8601 timestamp, e.g. 2026-12-06T08:00:00Z"
    if at.tzinfo is None or at.utcoffset() is None:
        return "at: the timestamp needs its offset (Z or +01:00)"
    try:
        at = at.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        return "at: out of range"
    if at > latest:
        return f"at: {value} is in the future (more than {int(MAX_AHEAD.total_seconds())}s ahead)"
    return at


def earliest_report(since: datetime) -> datetime:
    """The earliest `at` a report may give on a push that did not exist before `since` (its
    delivery's creation, or its campaign's), by `MAX_BEHIND`."""
    return earlier_by(since, MAX_BEHIND)


def too_early(at: datetime, made: datetime) -> bool:
    """Whether a report's `at` is too early to be true of a push whose delivery was made at
    `made`."""
    return at < earliest_report(made)


TOO_EARLY = (
    "at: before its push existed (more than "
    f"{int(MAX_BEHIND.total_seconds())}s before its campaign's wave made it)"
)
