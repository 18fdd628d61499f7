"""Recording decisions. Callers pass the session of the change being recorded, so the event
commits or rolls back together with it: there is never a change without its record. The
event is written when the session commits, linked into the hash chain (`app.audit.append`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import chain, export
from app.audit import repository as repo
from app.audit.append import chain_fields, enqueue
from app.audit.models import AuditEvent
from app.auth.principal import Principal

EXPORT_PAGE_SIZE = 1000


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
        person_id=principal.person_id,
        person_name=principal.person_name,
        key_id=principal.key_id,
        channel=principal.channel.value,
        hash_version=chain.CURRENT_VERSION,
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


async def plan_export(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    since: datetime | None,
    until: datetime | None,
) -> export.Plan:
    """What an export of [since, until) covers (`app.audit.export`), read before its first
    line: the chain's head now, and the stretch of sequences the range spans up to it."""
    async with sessionmaker() as session:
        head = await repo.chain_head(session)
        in_range = await repo.sequence_span(session, since=since, until=until, up_to=head.sequence)
    return export.plan(head, since, until, in_range)


async def export_lines(
    sessionmaker: async_sessionmaker[AsyncSession],
    plan: export.Plan,
    *,
    page_size: int = EXPORT_PAGE_SIZE,
) -> AsyncIterator[bytes]:
    """The export's NDJSON, one page of events at a time, then its head line. At most one
    page is held in memory, and each is read in a short transaction of its own (like
    `verify_chain`), so a slow reader holds back neither memory nor writers. Events up to
    the plan's head never change (the log is append-only), so the pages add up to the log
    as it was when the plan was made."""
    after = (plan.first_sequence or 1) - 1
    last = plan.last_sequence
    while last is not None and after < last:
        async with sessionmaker() as session:
            rows = await repo.chain_page(session, after_sequence=after, limit=page_size, up_to=last)
        if not rows:
            break
        yield b"".join(export.event_line(_stored(row)) for row in rows)
        after = rows[-1].sequence or last
    yield export.head_line(plan)


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
