"""The campaign state machine: one table, one function to consult it.

Every status change in the system goes through ``next_status`` so that no code path can, for
example, resume a killed campaign. The table is the whole truth: a pair that is not in it is
refused.

Notes on the less obvious transitions:

* ``scheduled --pause--> paused``: an operator can hold a campaign before its start time.
  Resuming it goes to ``running`` like any paused campaign; the state machine knows nothing about
  time, so whoever releases waves must still wait for ``start_at`` — a running campaign whose
  start is in the future sends nothing until it is due.
* ``auto_pause`` is the system's own pause (the guard, the failure guardrail, a provider that
  refuses our credentials, audience rules that no longer parse) and only applies to a campaign
  that is sending; a campaign that is not running has nothing to pause automatically.
* ``cancel`` stops further sends but lets in-flight requests finish; ``kill`` is immediate.
  Both are terminal, as is ``completed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class CampaignStatus(StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    running = "running"
    paused = "paused"
    completed = "completed"
    cancelled = "cancelled"
    killed = "killed"


class CampaignAction(StrEnum):
    schedule = "schedule"
    start = "start"
    pause = "pause"
    auto_pause = "auto_pause"
    resume = "resume"
    complete = "complete"
    cancel = "cancel"
    kill = "kill"


_S = CampaignStatus
_A = CampaignAction

#: Every allowed ``(current status, action) -> new status``. Read-only.
TRANSITIONS: Final[Mapping[tuple[CampaignStatus, CampaignAction], CampaignStatus]] = (
    MappingProxyType(
        {
            (_S.draft, _A.schedule): _S.scheduled,
            (_S.draft, _A.start): _S.running,
            (_S.draft, _A.cancel): _S.cancelled,
            (_S.draft, _A.kill): _S.killed,
            (_S.scheduled, _A.start): _S.running,
            (_S.scheduled, _A.pause): _S.paused,
            (_S.scheduled, _A.cancel): _S.cancelled,
            (_S.scheduled, _A.kill): _S.killed,
            (_S.running, _A.pause): _S.paused,
            (_S.running, _A.auto_pause): _S.paused,
            (_S.running, _A.complete): _S.completed,
            (_S.running, _A.cancel): _S.cancelled,
            (_S.running, _A.kill): _S.killed,
            (_S.paused, _A.resume): _S.running,
            (_S.paused, _A.cancel): _S.cancelled,
            (_S.paused, _A.kill): _S.killed,
        }
    )
)

#: Statuses no action leaves. Exactly the statuses with no entry in ``TRANSITIONS``.
TERMINAL_STATUSES: Final = frozenset({_S.completed, _S.cancelled, _S.killed})

#: Statuses in which new provider requests may start.
SENDING_STATUSES: Final = frozenset({_S.running})

#: Statuses in which no new provider request may start. ``draft`` and ``scheduled`` are in
#: neither set: they have not sent yet rather than stopped sending.
STOPPED_STATUSES: Final = frozenset({_S.paused, _S.cancelled, _S.killed, _S.completed})

_VERBS: Final[Mapping[CampaignAction, str]] = MappingProxyType(
    {action: action.value.replace("_", "-") for action in CampaignAction}
)


class InvalidTransition(Exception):
    """Raised when an action is not allowed from a campaign's current status.

    ``str(error)`` is a sentence for a person, e.g. "cannot resume a campaign that is killed".
    """

    def __init__(self, current: CampaignStatus, action: CampaignAction) -> None:
        self.current = current
        self.action = action
        message = f"cannot {_VERBS[action]} a campaign that is {current.value}"
        allowed = allowed_actions(current)
        if allowed:
            names = ", ".join(_VERBS[a] for a in CampaignAction if a in allowed)
            message += f"; from {current.value} it can: {names}"
        else:
            message += f"; {current.value} is final"
        super().__init__(message)


def next_status(current: CampaignStatus, action: CampaignAction) -> CampaignStatus:
    """Return the status ``action`` moves a campaign in ``current`` to.

    Raises ``InvalidTransition`` for any pair not in ``TRANSITIONS``, including every action on
    a terminal status and repeats such as pausing a paused campaign (callers that want such
    repeats to be harmless decide that themselves, before calling).
    """
    try:
        return TRANSITIONS[(current, action)]
    except KeyError:
        raise InvalidTransition(current, action) from None


def allowed_actions(current: CampaignStatus) -> frozenset[CampaignAction]:
    """Return the actions ``next_status`` accepts from ``current`` (empty when terminal)."""
    return frozenset(action for (status, action) in TRANSITIONS if status == current)


def is_terminal(status: CampaignStatus) -> bool:
    """Return whether no action can ever move a campaign out of ``status``."""
    return status in TERMINAL_STATUSES
