"""Recording decisions. Callers pass the session of the change being recorded, so the event
commits or rolls back together with it: there is never a change without its record. The
event is written when the session commits, linked into the hash chain (`app.audit.append`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import chain
from app.audit import repository as repo
from app.audit.append import chain_fields, enqueue
from app.audit.models import AuditEvent
from app.auth.principal import Principal


def record(
    session: AsyncSession,
    principal: Principal,
    action: str,
    *,
    subject_type: str,
    subject_id: object | None = None,
    reason: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor=principal.actor,
        action=action,
        subject_type=subject_type,
        subject_id=None if subject_id is None else str(subject_id),
        reason=reason,
        before=before,
        after=after,
    )
    enqueue(session.sync_session, event)
    return event


async def verify_chain(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    page_size: int = 5000,
    expected_head: chain.Head | None = None,
) -> chain.Verdict:
    """Walk the whole log in sequence order and return the first break, if any (and, given
    `expected_head`, whether the log reaches it). Each page is read in a short transaction of
    its own, so the walk never holds back writers."""
    walker = chain.Walker(expected_head)
    after = 0
    while True:
        async with sessionmaker() as session:
            rows = await repo.chain_page(session, after_sequence=after, limit=page_size)
        for row in rows:
            if not walker.feed(_stored(row)):
                return walker.verdict()
        if len(rows) < page_size:
            return walker.verdict()
        after = rows[-1].sequence or 0


def _stored(row: AuditEvent) -> chain.StoredEvent:
    assert row.id is not None and row.sequence is not None
    return chain.StoredEvent(
        id=row.id,
        fields=chain_fields(row, row.sequence),
        prev_hash=row.prev_hash or "",
        hash=row.hash or "",
    )


# A page of the log, newest first (the router's listing; the query is the repository's).
list_events = repo.list_events
