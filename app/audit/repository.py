"""Queries over the audit log. The log is append-only: there is no update or delete here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import chain
from app.audit.models import AuditEvent


async def list_events(
    session: AsyncSession,
    *,
    limit: int,
    before_id: int | None = None,
    action: str | None = None,
    actor: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Sequence[AuditEvent]:
    query = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
    if before_id is not None:
        query = query.where(col(AuditEvent.id) < before_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if subject_type is not None:
        query = query.where(AuditEvent.subject_type == subject_type)
    if subject_id is not None:
        query = query.where(AuditEvent.subject_id == subject_id)
    if since is not None:
        query = query.where(col(AuditEvent.occurred_at) >= since)
    if until is not None:
        query = query.where(col(AuditEvent.occurred_at) < until)
    return (await session.exec(query)).all()


async def chain_page(
    session: AsyncSession, *, after_sequence: int, limit: int, up_to: int | None = None
) -> Sequence[AuditEvent]:
    """Events in chain order, a page at a time (for walking the whole log, or up to the
    sequence `up_to`)."""
    query = (
        select(AuditEvent)
        .where(col(AuditEvent.sequence) > after_sequence)
        .order_by(col(AuditEvent.sequence))
        .limit(limit)
    )
    if up_to is not None:
        query = query.where(col(AuditEvent.sequence) <= up_to)
    return (await session.exec(query)).all()


async def chain_head(session: AsyncSession) -> chain.Head:
    """The last event's sequence and hash (sequence 0 and the genesis value when empty).
    Every sequence up to it is committed: sequences are given under the chain's lock, which
    is held until the commit (`app.audit.append`)."""
    query = (
        select(AuditEvent.sequence, AuditEvent.hash)
        .order_by(col(AuditEvent.sequence).desc())
        .limit(1)
    )
    head = (await session.exec(query)).first()
    if head is None or head[0] is None or head[1] is None:
        return chain.Head(0, chain.GENESIS)
    return chain.Head(head[0], head[1])


async def sequence_span(
    session: AsyncSession, *, since: datetime | None, until: datetime | None, up_to: int
) -> tuple[int, int] | None:
    """The lowest and highest sequence, up to `up_to`, of the events that occurred in
    [since, until); None when there are none."""
    query = select(func.min(col(AuditEvent.sequence)), func.max(col(AuditEvent.sequence))).where(
        col(AuditEvent.sequence) <= up_to
    )
    if since is not None:
        query = query.where(col(AuditEvent.occurred_at) >= since)
    if until is not None:
        query = query.where(col(AuditEvent.occurred_at) < until)
    low, high = (await session.exec(query)).one()
    if low is None or high is None:
        return None
    return int(low), int(high)


async def last_at(
    session: AsyncSession, *, subject_type: str, subject_id: str, action: str
) -> datetime | None:
    """When `action` was last recorded for the subject, or None."""
    query = select(func.max(col(AuditEvent.occurred_at))).where(
        col(AuditEvent.subject_type) == subject_type,
        col(AuditEvent.subject_id) == subject_id,
        col(AuditEvent.action) == action,
    )
    last: datetime | None = (await session.exec(query)).first()
    return last


async def last_after(
    session: AsyncSession, *, subject_type: str, subject_id: str, action: str
) -> Mapping[str, Any] | None:
    """The `after` of the newest `action` recorded for the subject, or None."""
    query = (
        select(AuditEvent.after)
        .where(
            col(AuditEvent.subject_type) == subject_type,
            col(AuditEvent.subject_id) == subject_id,
            col(AuditEvent.action) == action,
        )
        .order_by(col(AuditEvent.id).desc())
        .limit(1)
    )
    after: Mapping[str, Any] | None = (await session.exec(query)).first()
    return after
