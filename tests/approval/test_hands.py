"""Whose hands a key or a Slack binding passed through (`app.approval.hands`): pure logic,
over every shape of origins."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from app.approval.hands import (
    Origin,
    PersonEvent,
    key_makers,
    made_human_origin,
    origin_makers,
    slack_binding_origin,
)

PEOPLE = [uuid.UUID(int=100 + n) for n in range(4)]
KEYS = [uuid.UUID(int=n) for n in range(6)]
ANN, BEN, CAT, DAN = PEOPLE


def test_a_chain_names_every_maker_back_to_a_key_no_person_made() -> None:
    origins = {
        KEYS[0]: Origin(None, None),  # made on the server's command line
        KEYS[1]: Origin(ANN, KEYS[0]),
        KEYS[2]: Origin(BEN, KEYS[1]),
        KEYS[3]: Origin(CAT, KEYS[2]),
    }
    assert key_makers(KEYS[3], origins) == {ANN, BEN, CAT}
    assert key_makers(KEYS[1], origins) == {ANN}
    assert key_makers(KEYS[0], origins) == set()


def test_a_key_without_a_recorded_origin_ends_the_chain() -> None:
    # KEYS[1] was made before the audit log named people: nothing is known past it.
    origins = {KEYS[2]: Origin(BEN, KEYS[1])}
    assert key_makers(KEYS[2], origins) == {BEN}
    assert key_makers(KEYS[1], origins) == set()
    assert key_makers(None, origins) == set()


def test_a_maker_without_a_person_passes_on_to_its_key() -> None:
    # The system made KEYS[2] while acting with KEYS[1] (no person, a key): its maker counts.
    origins = {KEYS[1]: Origin(ANN, None), KEYS[2]: Origin(None, KEYS[1])}
    assert key_makers(KEYS[2], origins) == {ANN}


def test_a_cycle_ends() -> None:
    origins = {KEYS[0]: Origin(ANN, KEYS[1]), KEYS[1]: Origin(BEN, KEYS[0])}
    assert key_makers(KEYS[0], origins) == {ANN, BEN}
    assert key_makers(KEYS[1], origins) == {ANN, BEN}
    assert key_makers(KEYS[2], {KEYS[2]: Origin(CAT, KEYS[2])}) == {CAT}


def test_origin_makers_adds_the_person_to_their_keys_makers() -> None:
    origins = {KEYS[1]: Origin(ANN, None)}
    assert origin_makers(Origin(BEN, KEYS[1]), origins) == {ANN, BEN}
    assert origin_makers(Origin(None, KEYS[1]), origins) == {ANN}
    assert origin_makers(Origin(BEN, None), origins) == {BEN}
    assert origin_makers(None, origins) == set()


origin_maps = st.dictionaries(
    st.sampled_from(KEYS),
    st.builds(Origin, st.none() | st.sampled_from(PEOPLE), st.none() | st.sampled_from(KEYS)),
)


@given(origin_maps, st.sampled_from(KEYS))
def test_a_keys_makers_are_its_maker_and_its_makers_keys_makers(
    origins: dict[uuid.UUID, Origin], key: uuid.UUID
) -> None:
    """Each key has one origin, so what a key passed through is its own maker and all that
    the key it was made with passed through: the same whether or not the chain loops."""
    made = key_makers(key, origins)
    origin = origins.get(key)
    if origin is None:
        assert made == set()
        return
    expected = key_makers(origin.key_id, origins)
    if origin.person_id is not None:
        expected.add(origin.person_id)
    assert made == expected
    assert made <= {o.person_id for o in origins.values()}


def _event(
    person: uuid.UUID | None,
    action: str,
    before: str | None,
    after: str | None,
    field: str = "slack_user_id",
) -> PersonEvent:
    """A person event by `person` changing `field` from `before` to `after` (a creation has
    no before)."""
    return PersonEvent(
        Origin(person, None),
        action,
        None if action == "person.created" else {field: before},
        {field: after},
    )


def test_the_binding_is_the_last_event_that_set_the_current_slack_user() -> None:
    events = [
        _event(ANN, "person.created", None, "UONE"),
        _event(BEN, "person.updated", "UONE", "UTWO"),
        _event(CAT, "person.updated", "UTWO", "UONE"),
        # A later change of the name (the Slack user as it was) binds nothing.
        _event(DAN, "person.updated", "UONE", "UONE"),
    ]
    assert slack_binding_origin("UONE", events) == Origin(CAT, None)
    assert slack_binding_origin("UTWO", events) == Origin(BEN, None)
    assert slack_binding_origin(None, events) is None
    # Created with the Slack user it still has.
    assert slack_binding_origin("UONE", events[:1]) == Origin(ANN, None)


def test_a_binding_no_event_set_has_no_origin() -> None:
    assert slack_binding_origin("UONE", []) is None
    assert slack_binding_origin("UONE", [_event(ANN, "person.created", None, None)]) is None


@given(
    st.lists(
        st.tuples(
            st.sampled_from(PEOPLE),
            st.sampled_from([None, "UONE", "UTWO"]),
        ),
        min_size=1,
    )
)
def test_the_binding_origin_is_whoever_last_changed_it_to_its_value(
    changes: list[tuple[uuid.UUID, str | None]],
) -> None:
    """A person's history of Slack users, one event per change (the first a creation):
    the origin of the last value is the author of the last event that moved to it."""
    events, value = [], None
    for n, (who, after) in enumerate(changes):
        events.append(_event(who, "person.created" if n == 0 else "person.updated", value, after))
        value = after
    origin = slack_binding_origin(value, events)
    if value is None:
        assert origin is None
        return
    setters = [
        who
        for n, (who, after) in enumerate(changes)
        if after == value and (n == 0 or changes[n - 1][1] != after)
    ]
    assert origin == Origin(setters[-1], None)


def _kind(person: uuid.UUID | None, action: str, before: str | None, after: str) -> PersonEvent:
    return _event(person, action, before, after, field="kind")


def test_who_turned_a_person_into_a_human() -> None:
    created_human = [_kind(None, "person.created", None, "human")]
    assert made_human_origin(created_human) is None
    turned = [
        _kind(None, "person.created", None, "service"),
        _kind(ANN, "person.updated", "service", "human"),
        # A change of something else keeps the kind as it was: it turns no one.
        _kind(BEN, "person.updated", "human", "human"),
    ]
    assert made_human_origin(turned) == Origin(ANN, None)
    back_and_again = [*turned, _kind(BEN, "person.updated", "human", "service")]
    assert made_human_origin(back_and_again) is None
    back_and_again.append(_kind(CAT, "person.updated", "service", "human"))
    assert made_human_origin(back_and_again) == Origin(CAT, None)
