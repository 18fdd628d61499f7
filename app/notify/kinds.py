"""What the team channel hears of, and how loudly: the notification kinds, the audit actions
they report, and how one transaction's events become notifications. Pure, no I/O.

A notification is derived from the audit event that records the decision (every decision
writes one, in its own transaction), so the channel can never hear of a decision the log
does not hold, nor miss one it does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


class Kind(StrEnum):
    approval_requested = "approval.requested"
    approval_approved = "approval.approved"
    approval_voided = "approval.voided"
    campaign_started = "campaign.started"
    campaign_resumed = "campaign.resumed"
    wave_released = "campaign.wave_released"
    check_failed = "campaign.check_failed"
    auto_paused = "campaign.auto_paused"
    provider_halted = "provider.halted"
    guard_refused = "guard.refused"
    guard_overridden = "guard.overridden"
    campaign_paused = "campaign.paused"
    campaign_cancelled = "campaign.cancelled"
    campaign_killed = "campaign.killed"
    campaign_completed = "campaign.completed"
    switch_engaged = "kill_switch.engaged"
    switch_released = "kill_switch.released"
    # A Slack command that takes a second person (release, resume) waits for their Confirm.
    confirmation_requested = "slack.confirmation_requested"


SEVERITY: dict[Kind, Severity] = {
    Kind.approval_requested: Severity.info,
    Kind.approval_approved: Severity.info,
    Kind.approval_voided: Severity.warning,
    Kind.campaign_started: Severity.info,
    Kind.campaign_resumed: Severity.info,
    Kind.wave_released: Severity.info,
    Kind.check_failed: Severity.warning,
    Kind.auto_paused: Severity.warning,
    Kind.provider_halted: Severity.critical,
    Kind.guard_refused: Severity.warning,
    Kind.guard_overridden: Severity.warning,
    Kind.campaign_paused: Severity.warning,
    Kind.campaign_cancelled: Severity.warning,
    Kind.campaign_killed: Severity.critical,
    Kind.campaign_completed: Severity.info,
    Kind.switch_engaged: Severity.critical,
    Kind.switch_released: Severity.warning,
    Kind.confirmation_requested: Severity.warning,
}

# Audit actions reported one to one. `campaign.auto_pause` is told apart by its reason below.
ACTIONS: dict[str, Kind] = {
    # A draft created or edited may be waiting for a second person: the worker asks the
    # approval rules at send time (`app.notify.conditions`) and skips it when it is not.
    "campaign.created": Kind.approval_requested,
    "campaign.edited": Kind.approval_requested,
    "campaign.approved": Kind.approval_approved,
    # An edit after the approval: what was approved is not what would be sent any more.
    "campaign.approval_voided": Kind.approval_voided,
    "campaign.start": Kind.campaign_started,
    "campaign.resume": Kind.campaign_resumed,
    "campaign.wave_released": Kind.wave_released,
    "campaign.wave_checks_paused": Kind.check_failed,
    "guard.refused": Kind.guard_refused,
    "guard.overridden": Kind.guard_overridden,
    "campaign.pause": Kind.campaign_paused,
    "campaign.cancel": Kind.campaign_cancelled,
    "campaign.kill": Kind.campaign_killed,
    "campaign.complete": Kind.campaign_completed,
    "kill_switch.engaged": Kind.switch_engaged,
    "kill_switch.released": Kind.switch_released,
    "slack.confirmation_requested": Kind.confirmation_requested,
}
AUTO_PAUSE = "campaign.auto_pause"
# The sender's reason for a pause on a provider's refusal of our credentials
# (app.delivery.sender); a test holds the two together.
PROVIDER_HALT_PREFIX = "provider refused our credentials or sender"


@dataclass(frozen=True)
class EventView:
    """What the plan reads of an audit event."""

    sequence: int
    action: str
    subject_id: str | None
    reason: str | None


@dataclass(frozen=True)
class Planned:
    sequence: int
    kind: Kind
    campaign_id: str | None
    details: dict[str, Any] | None = field(default=None)


def kind_of(action: str, reason: str | None) -> Kind | None:
    if action == AUTO_PAUSE:
        if (reason or "").startswith(PROVIDER_HALT_PREFIX):
            return Kind.provider_halted
        return Kind.auto_paused
    return ACTIONS.get(action)


def plan(events: Iterable[EventView]) -> list[Planned]:
    """The notifications of one transaction's events, in the order of the chain.

    Two folds keep the channel readable without hiding anything:
    - the global switch pauses every live campaign in its own transaction: one message
      names them all (`details.paused`) instead of one message per campaign;
    - a failing wave check pauses its campaign in the same transaction: the check's message
      (value and condition) says it paused, so the pause adds no second message.
    """
    ordered: Sequence[EventView] = sorted(events, key=lambda e: e.sequence)
    engaged = any(e.action == "kill_switch.engaged" for e in ordered)
    checked = {e.subject_id for e in ordered if e.action == "campaign.wave_checks_paused"}
    paused_by_switch = [
        e.subject_id for e in ordered if engaged and e.action == "campaign.pause" and e.subject_id
    ]
    planned: list[Planned] = []
    for event in ordered:
        kind = kind_of(event.action, event.reason)
        if kind is None:
            continue
        if engaged and kind is Kind.campaign_paused:
            continue
        if kind is Kind.auto_paused and event.subject_id in checked:
            continue
        campaign_id = None if kind in _SWITCH_KINDS else event.subject_id
        details = {"paused": paused_by_switch} if kind is Kind.switch_engaged else None
        planned.append(Planned(event.sequence, kind, campaign_id, details))
    return planned


_SWITCH_KINDS = frozenset({Kind.switch_engaged, Kind.switch_released})


def subscribed(events: Sequence[str], kind: Kind) -> bool:
    """A webhook's `events` list covers `kind` (`*` covers every kind)."""
    return "*" in events or kind.value in events
