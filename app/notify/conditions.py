"""Notifications decided at send time: "approval requested".

No decision requests an approval: a draft waits for one when the approval rules say it
needs one (`app.approval.service`: its audience, the deployment, a guard override). So
every draft created or edited is noted in its own transaction, and the worker asks the
rules when the message is due: it is sent, naming why and who may approve, only if the
campaign is still a draft waiting for approval and no later edit has a notification of its
own; otherwise it is skipped."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.approval import service as approval
from app.campaigns import repository as campaigns
from app.notify import repository
from app.notify.kinds import Kind
from app.notify.models import OutboxMessage
from app.settings import Settings


async def approval_waiting(
    session: AsyncSession, settings: Settings, row: OutboxMessage
) -> dict[str, Any] | None:
    """The facts of the request (why, who may approve, the override to read), or None when
    the campaign no longer waits for approval as of this notification."""
    try:
        campaign_id = uuid.UUID(row.campaign_id or "")
    except ValueError:
        return None
    campaign = await campaigns.get(session, campaign_id)
    if campaign is None:
        return None
    if await repository.newer_of_kind(
        session,
        kind=Kind.approval_requested.value,
        campaign_id=str(campaign_id),
        destination=row.destination,
        after_sequence=row.audit_sequence,
    ):
        return None
    status = await approval.status(session, settings, campaign)
    if not status.waiting:
        return None
    return {
        "reasons": status.reasons,
        "may_approve": status.may_approve,
        "override_reason": status.override_reason,
        # What the message shows: its Approve button approves this version only.
        "binding": status.binding,
    }
