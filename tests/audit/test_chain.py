"""The hash chain's pure logic: any single edit, deletion or reordering is found, at the
right event."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.audit import chain

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def build(n: int, after: list[object] | None = None) -> list[chain.StoredEvent]:
    events = []
    prev = chain.GENESIS
    for i in range(n):
        fields = chain.ChainFields(
            sequence=i + 1,
            occurred_at=T0 + timedelta(seconds=i),
            actor="key:abc (crm)",
            action="campaign.paused",
            subject_type="campaign",
            subject_id=str(i),
            reason=f"reason {i}",
            before=None,
            after={"value": after[i] if after else i},
        )
        digest = chain.digest(fields, prev)
        events.append(chain.StoredEvent(id=100 + i, fields=fields, prev_hash=prev, hash=digest))
        prev = digest
    return events


def test_an_untouched_chain_verifies() -> None:
    events = build(5)
    verdict = chain.verify(events)
    assert verdict.broken is None
    assert verdict.checked == 5
    assert verdict.head_sequence == 5
    assert verdict.head_hash == events[-1].hash
    assert chain.verify([]).broken is None


def test_canonical_form_is_stable_and_covers_every_field() -> None:
    [event] = build(1)
    base = chain.digest(event.fields, chain.GENESIS)
    assert base == event.hash
    assert len(base) == 64
    changes = {
        "sequence": 2,
        "occurred_at": T0 + timedelta(microseconds=1),
        "actor": "someone else",
        "action": "campaign.resumed",
        "subject_type": "segment",
        "subject_id": None,
        "reason": None,
        "before": {},
        "after": {"value": 1},
    }
    for name, value in changes.items():
        changed = dataclasses.replace(event.fields, **{name: value})  # type: ignore[arg-type]
        assert chain.digest(changed, chain.GENESIS) != base, name
    assert chain.digest(event.fields, "f" * 64) != base


def test_numbers_hash_as_a_jsonb_round_trip_returns_them() -> None:
    # JSONB stores numbers as decimals: 1e20 comes back as the int 10**20, 2.0 as 2.
    [a] = build(1, after=[{"big": 1e20, "two": 2.0, "tiny": 1e-7, "list": [3.0, 0.5]}])
    [b] = build(1, after=[{"big": 10**20, "two": 2, "tiny": 1e-7, "list": [3, 0.5]}])
    assert a.hash == b.hash
    [c] = build(1, after=[{"big": 10**20 + 1}])
    assert c.hash != a.hash


def test_naive_timestamps_are_refused() -> None:
    [event] = build(1)
    naive = dataclasses.replace(event.fields, occurred_at=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone"):
        chain.digest(naive, chain.GENESIS)


@given(n=st.integers(2, 8), data=st.data())
def test_any_edit_is_found_at_the_edited_event(n: int, data: st.DataObject) -> None:
    events = build(n)
    i = data.draw(st.integers(0, n - 1))
    field = data.draw(st.sampled_from(["actor", "reason", "subject_id", "after", "occurred_at"]))
    old = getattr(events[i].fields, field)
    new = data.draw(
        {
            "actor": st.text(),
            "reason": st.none() | st.text(),
            "subject_id": st.none() | st.text(),
            "after": st.dictionaries(st.text(), json_values, max_size=3),
            "occurred_at": st.datetimes(timezones=st.just(UTC)),
        }[field].filter(lambda v: v != old)
    )
    edited = dataclasses.replace(
        events[i], fields=dataclasses.replace(events[i].fields, **{field: new})
    )
    verdict = chain.verify([*events[:i], edited, *events[i + 1 :]])
    assert verdict.broken is not None
    assert (verdict.broken.id, verdict.broken.sequence) == (100 + i, i + 1)
    assert "edited" in verdict.broken.problem
    assert verdict.checked == i


@given(n=st.integers(2, 8), data=st.data())
def test_any_deletion_is_found_at_the_event_after_it(n: int, data: st.DataObject) -> None:
    events = build(n)
    i = data.draw(st.integers(0, n - 2))  # deleting the last one leaves a shorter valid chain
    verdict = chain.verify([*events[:i], *events[i + 1 :]])
    assert verdict.broken is not None
    assert verdict.broken.id == 100 + i + 1
    assert "missing" in verdict.broken.problem


def test_deleting_the_first_event_is_found() -> None:
    events = build(3)
    verdict = chain.verify(events[1:])
    assert verdict.broken is not None and verdict.broken.id == 101


@given(n=st.integers(2, 8), data=st.data())
def test_any_reordering_is_found(n: int, data: st.DataObject) -> None:
    events = build(n)
    i = data.draw(st.integers(0, n - 2))
    j = data.draw(st.integers(i + 1, n - 1))
    # Swap the two events' places in the chain (their sequence numbers), as an UPDATE would.
    a, b = events[i], events[j]
    moved_b = dataclasses.replace(b, fields=dataclasses.replace(b.fields, sequence=i + 1))
    moved_a = dataclasses.replace(a, fields=dataclasses.replace(a.fields, sequence=j + 1))
    swapped = [*events]
    swapped[i], swapped[j] = moved_b, moved_a
    verdict = chain.verify(swapped)
    assert verdict.broken is not None
    assert verdict.broken.id == b.id
    assert verdict.broken.sequence == i + 1


@given(json_values)
def test_any_json_value_serialises(value: object) -> None:
    [event] = build(1, after=[value])
    assert chain.verify([event]).broken is None
