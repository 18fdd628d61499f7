"""Statements over `campaign_approval`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.approval.hands import Origin, PersonEvent
from app.approval.models import CampaignApproval
from app.audit.models import AuditEvent

# The decisions that write a campaign: whoever made one of them wrote what is approved.
WRITES = ("campaign.created", "campaign.edited")


async def standing(session: AsyncSession, campaign_id: uuid.UUID) -> Sequence[CampaignApproval]:
    """The campaign's approvals not voided, newest first."""
    query = (
        select(CampaignApproval)
        .where(
            CampaignApproval.campaign_id == campaign_id,
            col(CampaignApproval.voided_at).is_(None),
        )
        .order_by(col(CampaignApproval.approved_at).desc())
    )
    return (await session.exec(query)).all()


async def latest(session: AsyncSession, campaign_id: uuid.UUID) -> CampaignApproval | None:
    """The campaign's newest approval, voided or not."""
    query = (
        select(CampaignApproval)
        .where(CampaignApproval.campaign_id == campaign_id)
        .order_by(col(CampaignApproval.approved_at).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def writes(
    session: AsyncSession, campaign_id: uuid.UUID
) -> set[tuple[uuid.UUID | None, uuid.UUID | None]]:
    """Who created or edited the campaign and with which key (the form's acts carry the key
    its user signed in with), as the audit log records them: (person, key) pairs. Events
    written before people existed name neither."""
    query = (
        select(AuditEvent.person_id, AuditEvent.key_id)
        .where(
            col(AuditEvent.subject_type) == "campaign",
            col(AuditEvent.subject_id) == str(campaign_id),
            col(AuditEvent.action).in_(WRITES),
        )
        .distinct()
    )
    return {(person, key) for person, key in (await session.exec(query)).all()}


async def key_origins(session: AsyncSession) -> dict[uuid.UUID, Origin]:
    """Each key's origin as the audit log records it (`api_key.created`: the person and the
    key that made it). Keys made before the log named people have none."""
    query = select(AuditEvent.subject_id, AuditEvent.person_id, AuditEvent.key_id).where(
        col(AuditEvent.action) == "api_key.created",
        col(AuditEvent.subject_type) == "api_key",
    )
    origins: dict[uuid.UUID, Origin] = {}
    for subject, person_id, key_id in (await session.exec(query)).all():
        if subject is not None:
            origins[uuid.UUID(subject)] = Origin(person_id, key_id)
    return origins


async def person_events(
    session: AsyncSession, person_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[PersonEvent]]:
    """The `person.created` and `person.updated` events of each of `person_ids`, oldest
    first."""
    if not person_ids:
        return {}
    query = (
        sa_select(
            col(AuditEvent.subject_id),
            col(AuditEvent.person_id),
            col(AuditEvent.key_id),
            col(AuditEvent.action),
            col(AuditEvent.before),
            col(AuditEvent.after),
        )
        .where(
            col(AuditEvent.subject_type) == "person",
            col(AuditEvent.subject_id).in_([str(p) for p in person_ids]),
            col(AuditEvent.action).in_(("person.created", "person.updated")),
        )
        .order_by(col(AuditEvent.sequence))
    )
    events: dict[uuid.UUID, list[PersonEvent]] = {}
    for subject, person_id, key_id, action, before, after in (await session.execute(query)).all():
        if subject is not None:
            events.setdefault(uuid.UUID(subject), []).append(
                PersonEvent(Origin(person_id, key_id), action, before, after)
            )
    return events
