import itertools
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.campaigns.state import (
    SENDING_STATUSES,
    STOPPED_STATUSES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    CampaignAction,
    CampaignStatus,
    InvalidTransition,
    allowed_actions,
    is_terminal,
    next_status,
)

# Written out from the brief by hand, in plain strings, so a typo in the table cannot hide in
# a shared constant. Anything missing here must be refused.
EXPECTED: dict[str, dict[str, str]] = {
    "draft": {
        "schedule": "scheduled",
        "start": "running",
        "cancel": "cancelled",
        "kill": "killed",
    },
    "scheduled": {
        "start": "running",
        "pause": "paused",
        "cancel": "cancelled",
        "kill": "killed",
    },
    "running": {
        "pause": "paused",
        "auto_pause": "paused",
        "complete": "completed",
        "cancel": "cancelled",
        "kill": "killed",
    },
    "paused": {
        "resume": "running",
        "cancel": "cancelled",
        "kill": "killed",
    },
    "completed": {},
    "cancelled": {},
    "killed": {},
}

ALL_PAIRS = list(itertools.product(CampaignStatus, CampaignAction))


def test_enum_values_are_the_stored_spellings() -> None:
    assert [s.value for s in CampaignStatus] == [
        "draft",
        "scheduled",
        "running",
        "paused",
        "completed",
        "cancelled",
        "killed",
    ]
    assert [a.value for a in CampaignAction] == [
        "schedule",
        "start",
        "pause",
        "auto_pause",
        "resume",
        "complete",
        "cancel",
        "kill",
    ]
    assert set(EXPECTED) == {s.value for s in CampaignStatus}


@pytest.mark.parametrize(
    ("status", "action"), ALL_PAIRS, ids=[f"{s.value}-{a.value}" for s, a in ALL_PAIRS]
)
def test_every_pair_matches_the_expectation(status: CampaignStatus, action: CampaignAction) -> None:
    expected = EXPECTED[status.value].get(action.value)
    if expected is None:
        with pytest.raises(InvalidTransition) as raised:
            next_status(status, action)
        assert raised.value.current is status
        assert raised.value.action is action
        verb = action.value.replace("_", "-")
        assert str(raised.value).startswith(f"cannot {verb} a campaign that is {status.value}")
        assert (status, action) not in TRANSITIONS
        assert action not in allowed_actions(status)
    else:
        assert next_status(status, action) == CampaignStatus(expected)
        assert action in allowed_actions(status)


def test_table_has_exactly_the_expected_entries() -> None:
    as_strings = {(s.value, a.value): t.value for (s, a), t in TRANSITIONS.items()}
    expected = {
        (status, action): target
        for status, actions in EXPECTED.items()
        for action, target in actions.items()
    }
    assert as_strings == expected


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[(CampaignStatus.killed, CampaignAction.resume)] = (  # type: ignore[index]
            CampaignStatus.running
        )


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        (
            CampaignStatus.killed,
            CampaignAction.resume,
            "cannot resume a campaign that is killed; killed is final",
        ),
        (
            CampaignStatus.paused,
            CampaignAction.auto_pause,
            "cannot auto-pause a campaign that is paused; from paused it can: resume, cancel, kill",
        ),
        (
            CampaignStatus.draft,
            CampaignAction.complete,
            "cannot complete a campaign that is draft; "
            "from draft it can: schedule, start, cancel, kill",
        ),
    ],
)
def test_invalid_transition_message(
    status: CampaignStatus, action: CampaignAction, message: str
) -> None:
    with pytest.raises(InvalidTransition) as raised:
        next_status(status, action)
    assert str(raised.value) == message


def test_terminal_statuses() -> None:
    assert {s.value for s in TERMINAL_STATUSES} == {"completed", "cancelled", "killed"}
    for status in CampaignStatus:
        assert is_terminal(status) == (EXPECTED[status.value] == {})
        assert is_terminal(status) == (allowed_actions(status) == frozenset())


def test_sending_and_stopped_statuses() -> None:
    assert {s.value for s in SENDING_STATUSES} == {"running"}
    assert {s.value for s in STOPPED_STATUSES} == {"paused", "cancelled", "killed", "completed"}
    assert not SENDING_STATUSES & STOPPED_STATUSES
    # Not yet sending is different from stopped.
    neither = set(CampaignStatus) - SENDING_STATUSES - STOPPED_STATUSES
    assert {s.value for s in neither} == {"draft", "scheduled"}
    assert TERMINAL_STATUSES <= STOPPED_STATUSES


def test_every_status_is_reachable_from_draft() -> None:
    seen = {CampaignStatus.draft}
    queue = deque(seen)
    while queue:
        status = queue.popleft()
        for action in allowed_actions(status):
            target = next_status(status, action)
            if target not in seen:
                seen.add(target)
                queue.append(target)
    assert seen == set(CampaignStatus)


@given(
    st.sampled_from(CampaignStatus),
    st.lists(st.sampled_from(CampaignAction), max_size=30),
)
def test_random_action_sequences(start: CampaignStatus, actions: list[CampaignAction]) -> None:
    status = start
    for action in actions:
        if is_terminal(status):
            # Once terminal, nothing moves the campaign again.
            for any_action in CampaignAction:
                with pytest.raises(InvalidTransition):
                    next_status(status, any_action)
        else:
            # The kill switch works from wherever the campaign is.
            assert next_status(status, CampaignAction.kill) is CampaignStatus.killed
        expected = EXPECTED[status.value].get(action.value)
        try:
            after = next_status(status, action)
        except InvalidTransition:
            assert expected is None
            continue
        assert after.value == expected
        status = after
