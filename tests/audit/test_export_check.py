"""The export's format and its offline check, without a database: an untouched export
verifies, and any edit, deletion, reordering or altered head line is found at the right
line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.audit import chain, export
from app.audit.export_check import verify_export
from tests.audit.test_chain import T0, build


def export_of(
    events: list[chain.StoredEvent],
    *,
    head: chain.Head | None = None,
    until: datetime | None = None,
) -> list[bytes]:
    last = events[-1] if events else None
    plan = export.Plan(
        head=head
        or (chain.Head(last.fields.sequence, last.hash) if last else chain.Head(0, chain.GENESIS)),
        since=None,
        until=until,
        first_sequence=events[0].fields.sequence if events else None,
        last_sequence=last.fields.sequence if last else None,
    )
    return [*(export.event_line(e) for e in events), export.head_line(plan)]


def edit(line: bytes, **changes: object) -> bytes:
    document = json.loads(line)
    document.update(changes)
    return json.dumps(document).encode() + b"\n"


def failure(lines: list[bytes], expected_head: chain.Head | None = None) -> tuple[int, str]:
    verdict = verify_export(lines, expected_head=expected_head)
    assert verdict.failure is not None, "the export verified"
    return verdict.failure.line, verdict.failure.describe()


def test_an_untouched_export_verifies_and_reports_its_ends() -> None:
    events = build(5)
    verdict = verify_export(export_of(events))
    assert verdict.failure is None
    assert verdict.checked == 5
    assert verdict.starts_after == chain.Head(0, chain.GENESIS)
    assert verdict.last == chain.Head(5, events[-1].hash)
    assert verdict.head_line is not None and verdict.head_line.head.sequence == 5


def test_event_lines_carry_the_hashed_fields_as_the_hash_sees_them() -> None:
    [event] = build(1, after=[{"big": 1e20, "two": 2.0}])
    line = export.event_line(event)
    document = json.loads(line)
    assert list(document) == list(export.EVENT_KEYS)
    assert b'{"value":{"big":100000000000000000000,"two":2}}' in line
    assert document["occurred_at"] == "2026-11-22T10:00:00.000000Z"
    assert document["prev_hash"] == chain.GENESIS and document["hash"] == event.hash


def test_a_range_that_starts_later_chains_from_its_first_prev_hash() -> None:
    events = build(6)
    verdict = verify_export(export_of(events[2:]))
    assert verdict.failure is None
    assert verdict.starts_after == chain.Head(2, events[1].hash)


@given(n=st.integers(2, 7), data=st.data())
def test_any_edited_field_is_found_at_its_line(n: int, data: st.DataObject) -> None:
    lines = export_of(build(n))
    i = data.draw(st.integers(0, n - 1))
    field, value = data.draw(
        st.sampled_from(
            [
                ("actor", "someone else"),
                ("reason", None),
                ("subject_id", "other"),
                ("after", {"value": -1}),
                ("before", {}),
                ("occurred_at", "2026-11-22T10:00:00.000001Z"),
                ("action", "campaign.resumed"),
            ]
        )
    )
    lines[i] = edit(lines[i], **{field: value})
    line, said = failure(lines)
    assert line == i + 1
    assert f"line {i + 1} (sequence {i + 1})" in said and "edited" in said


def test_an_edited_hash_is_found_at_that_line() -> None:
    lines = export_of(build(4))
    lines[1] = edit(lines[1], hash="f" * 64)
    line, said = failure(lines)
    assert line == 2 and "edited" in said


@pytest.mark.parametrize("i", [0, 1, 2, 3, 4])
def test_a_deleted_event_line_is_found(i: int) -> None:
    lines = export_of(build(5))
    del lines[i]
    line, said = failure(lines)
    if i == 0:  # the file now starts at sequence 2: its head line says 1
        assert line == 1 and "starts here" in said
    elif i == 4:  # it now ends at 4: its head line says 5
        assert line == 5 and "ends at sequence 4" in said
    else:
        assert line == i + 1 and f"sequence {i + 1} missing" in said


def test_reordered_lines_are_found() -> None:
    lines = export_of(build(5))
    lines[1], lines[2] = lines[2], lines[1]
    line, said = failure(lines)
    assert line == 2 and "sequence 2 missing" in said


def test_the_first_line_of_the_log_must_link_to_genesis() -> None:
    events = build(3)
    lines = export_of(events)
    lines[0] = edit(lines[0], prev_hash="a" * 64)
    line, said = failure(lines)
    assert line == 1 and "genesis" in said


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"head": {"sequence": 4, "hash": "a" * 64}}, "head line was altered"),
        ({"head": {"sequence": 6, "hash": "a" * 64}}, "must end at the chain head"),
        ({"head": {"sequence": 3, "hash": "a" * 64}}, "comes before the last"),
        ({"last_sequence": 3}, "ends at sequence 4"),
        ({"first_sequence": 2}, "starts here"),
        ({"to": "2026-01-01T00:00:00"}, "time zone"),
        ({"extra": 1}, "unknown fields"),
    ],
)
def test_an_altered_head_line_is_found(change: dict[str, object], says: str) -> None:
    lines = export_of(build(4))
    lines[-1] = edit(lines[-1], **change)
    line, said = failure(lines)
    assert says in said
    assert line == (1 if "first_sequence" in change else 5)


def test_a_cut_file_and_lines_after_the_head_are_found() -> None:
    lines = export_of(build(3))
    line, said = failure(lines[:-1])
    assert line == 4 and "no head line" in said
    line, said = failure([*lines, lines[0]])
    assert line == 5 and "after the head line" in said
    line, said = failure([lines[0], b"not json\n", *lines[1:]])
    assert line == 2 and "not a JSON document" in said


def test_a_range_that_ends_before_the_head_is_checked_against_its_head_line() -> None:
    events = build(6)
    until = T0 + timedelta(seconds=4)
    head = chain.Head(6, events[-1].hash)
    lines = export_of(events[:4], head=head, until=until)
    assert verify_export(lines).failure is None
    line, said = failure(lines[:3] + lines[4:])
    assert line == 4 and "ends at sequence 3" in said


def test_an_expected_head_is_checked_where_the_export_can_show_it() -> None:
    events = build(6)
    whole = export_of(events)
    later = export_of(events[3:])  # sequences 4..6
    at = chain.Head(5, events[4].hash)
    before_it = chain.Head(3, events[2].hash)  # the event `later` chains from
    assert verify_export(whole, expected_head=at).failure is None
    assert verify_export(later, expected_head=at).failure is None
    assert verify_export(later, expected_head=before_it).failure is None

    line, said = failure(whole, chain.Head(5, "b" * 64))
    assert line == 5 and "expected head" in said
    line, said = failure(later, chain.Head(3, "b" * 64))
    assert line == 1 and "expected head" in said
    line, said = failure(later, chain.Head(2, events[1].hash))
    assert line == 1 and "starts after the expected head" in said
    line, said = failure(export_of(events[:4]), at)
    assert line == 5 and "ends at sequence 4, before the expected head" in said


def test_an_empty_export_verifies_but_cannot_show_an_expected_head() -> None:
    lines = export_of([])
    assert verify_export(lines).failure is None
    line, said = failure(lines, chain.Head(1, "a" * 64))
    assert line == 1 and "holds no events" in said


def test_the_plan_spans_every_sequence_between_the_ends_of_the_range() -> None:
    head = chain.Head(9, "a" * 64)
    since, until = T0, T0 + timedelta(hours=1)
    assert export.plan(head, since, until, None).count == 0
    assert export.plan(head, since, until, (3, 5)) == export.Plan(head, since, until, 3, 5)
    # No `from`: from the first event; no `to`: up to the head.
    assert export.plan(head, None, until, (3, 5)).first_sequence == 1
    assert export.plan(head, since, None, (3, 5)).last_sequence == 9


def test_a_range_may_not_end_before_it_starts() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert export.range_problem(now, now - timedelta(seconds=1)) is not None
    assert export.range_problem(now, now) is None
    assert export.range_problem(None, now) is None
