"""Which audit events reach the channel, and how one transaction's events fold."""

from __future__ import annotations

import inspect

from hypothesis import given
from hypothesis import strategies as st

from app.delivery import sender
from app.notify.kinds import (
    ACTIONS,
    PROVIDER_HALT_PREFIX,
    SEVERITY,
    EventView,
    Kind,
    Severity,
    kind_of,
    plan,
    subscribed,
)


def test_every_kind_has_a_severity_and_every_action_a_kind() -> None:
    assert set(SEVERITY) == set(Kind)
    assert set(ACTIONS.values()) | {Kind.auto_paused, Kind.provider_halted} == set(Kind)
    assert SEVERITY[Kind.campaign_killed] is Severity.critical
    assert SEVERITY[Kind.switch_engaged] is Severity.critical
    assert SEVERITY[Kind.provider_halted] is Severity.critical
    assert SEVERITY[Kind.wave_released] is Severity.info


def test_a_provider_halt_is_told_apart_from_other_automatic_pauses() -> None:
    halt = f"{PROVIDER_HALT_PREFIX} (THIRD_PARTY_AUTH_ERROR): bad key"
    assert kind_of("campaign.auto_pause", halt) is Kind.provider_halted
    assert kind_of("campaign.auto_pause", "failure guardrail: 5 of 10") is Kind.auto_paused
    assert kind_of("campaign.auto_pause", None) is Kind.auto_paused
    # The sender writes that reason: the two must not drift apart.
    assert PROVIDER_HALT_PREFIX in inspect.getsource(sender)


def test_actions_that_are_not_decisions_worth_telling_are_not_told() -> None:
    for action in ("campaign.wave_sized", "key.created"):
        assert kind_of(action, None) is None
    # An approval voided by an edit is told: its approver learns the campaign needs them again.
    assert kind_of("campaign.approval_voided", None) is Kind.approval_voided
    # A draft created or edited may await approval: the worker decides when it is due.
    assert kind_of("campaign.created", None) is Kind.approval_requested
    assert kind_of("campaign.edited", None) is Kind.approval_requested


def ev(
    sequence: int, action: str, subject: str | None = "c1", reason: str | None = None
) -> EventView:
    return EventView(sequence, action, subject, reason)


def test_the_global_switch_is_one_message_naming_the_campaigns_it_paused() -> None:
    planned = plan(
        [
            ev(3, "campaign.pause", "c2", "global kill switch engaged: app down"),
            ev(1, "kill_switch.engaged", "1", "app down"),
            ev(2, "campaign.pause", "c1", "global kill switch engaged: app down"),
        ]
    )
    assert len(planned) == 1
    assert planned[0].kind is Kind.switch_engaged
    assert planned[0].campaign_id is None
    assert planned[0].details == {"paused": ["c1", "c2"]}


def test_a_failed_check_and_the_pause_it_caused_are_one_message() -> None:
    planned = plan(
        [
            ev(7, "campaign.wave_checks_paused", "c1", "errors 0.3 >= 0.02"),
            ev(8, "campaign.auto_pause", "c1"),
        ]
    )
    assert [p.kind for p in planned] == [Kind.check_failed]
    other = plan([ev(7, "campaign.wave_checks_paused", "c1"), ev(8, "campaign.auto_pause", "c2")])
    assert [p.kind for p in other] == [Kind.check_failed, Kind.auto_paused]


def test_an_ordinary_pause_outside_the_switch_is_told() -> None:
    planned = plan([ev(4, "campaign.pause", "c1", "looks wrong")])
    assert [(p.kind, p.campaign_id) for p in planned] == [(Kind.campaign_paused, "c1")]


actions = st.sampled_from([*ACTIONS, "campaign.auto_pause", "campaign.wave_sized"])


@given(st.lists(st.tuples(actions, st.sampled_from(["c1", "c2", None])), max_size=12))
def test_the_plan_keeps_the_chains_order_and_reports_each_event_at_most_once(
    items: list[tuple[str, str | None]],
) -> None:
    events = [ev(i + 1, action, subject) for i, (action, subject) in enumerate(items)]
    planned = plan(reversed(events))
    sequences = [p.sequence for p in planned]
    assert sequences == sorted(set(sequences))
    engaged = any(a == "kill_switch.engaged" for a, _ in items)
    for event in events:
        told = event.sequence in sequences
        kind = kind_of(event.action, event.reason)
        if kind is None or (kind is Kind.campaign_paused and engaged):
            assert not told
        elif kind not in (Kind.auto_paused,):
            assert told


def test_webhook_subscriptions() -> None:
    assert subscribed(["*"], Kind.campaign_killed)
    assert subscribed(["campaign.killed"], Kind.campaign_killed)
    assert not subscribed(["campaign.started"], Kind.campaign_killed)
