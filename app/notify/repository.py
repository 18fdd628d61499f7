"""Statements over the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.models import AuditEvent
from app.campaigns.models import Campaign
from app.notify.models import SLACK, DeliveryAttempt, OutboxMessage, OutboxStatus

# pg_try_advisory_xact_lock key of the Slack lane: one claimer at a time keeps the channel
# in the order of the log.
SLACK_LANE_KEY = 0x57AC0DE5
WEBHOOK_PREFIX = "webhook:"


async def anything_due(session: AsyncSession, *, now: datetime) -> bool:
    """Whether any pending message, of either lane, is due by `now`: when none is, neither
    `claim_slack` nor `claim_webhooks` would claim anything."""
    due = await session.execute(
        select(
            exists().where(
                col(OutboxMessage.status) == OutboxStatus.pending,
                col(OutboxMessage.next_attempt_at) <= now,
            )
        )
    )
    return bool(due.scalar())


async def claim_slack(
    session: AsyncSession, *, now: datetime, limit: int, until: datetime, token: str
) -> list[OutboxMessage]:
    """The next Slack messages in the order of the log, claimed until `until`.

    The channel must read in the order decisions were made, so the lane has one sender at a
    time: nothing is claimed while another worker's claim on a pending message stands, and
    a message that is waiting for its retry holds back those after it. On PostgreSQL the
    claimers serialise on an advisory lock (a claimer that does not get it leaves the lane
    to the one that did) and the rows are taken FOR UPDATE SKIP LOCKED; on SQLite the unit
    of work's write lock serialises them."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        got = await session.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SLACK_LANE_KEY}
        )
        if not got.scalar():
            return []
    pending = (col(OutboxMessage.destination) == SLACK) & (
        col(OutboxMessage.status) == OutboxStatus.pending
    )
    busy = await session.execute(
        select(exists().where(pending, col(OutboxMessage.claimed_until) > now))
    )
    if busy.scalar():
        return []
    query = (
        select(OutboxMessage)
        .where(pending)
        .order_by(col(OutboxMessage.audit_sequence))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list((await session.exec(query)).all())
    due: list[OutboxMessage] = []
    for row in rows:
        if row.next_attempt_at > now:
            break
        due.append(row)
    _claim(session, due, until, token)
    return due


async def claim_webhooks(
    session: AsyncSession, *, now: datetime, limit: int, until: datetime, token: str
) -> list[OutboxMessage]:
    """Due webhook deliveries nobody holds, claimed until `until` (SKIP LOCKED on
    PostgreSQL: workers claiming at once take different rows)."""
    query = (
        select(OutboxMessage)
        .where(
            col(OutboxMessage.destination).startswith(WEBHOOK_PREFIX),
            col(OutboxMessage.status) == OutboxStatus.pending,
            col(OutboxMessage.next_attempt_at) <= now,
            col(OutboxMessage.claimed_until).is_(None) | (col(OutboxMessage.claimed_until) <= now),
        )
        .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list((await session.exec(query)).all())
    _claim(session, rows, until, token)
    return rows


def _claim(
    session: AsyncSession, rows: Sequence[OutboxMessage], until: datetime, token: str
) -> None:
    for row in rows:
        row.claimed_until = until
        row.claim_token = token
        session.add(row)


async def finish(
    session: AsyncSession,
    message_id: int,
    token: str,
    *,
    values: dict[str, Any],
    attempt: DeliveryAttempt | None,
) -> bool:
    """Write what came of a claimed message (and its attempt), releasing the claim. False
    when the claim was lost (another worker took the message over after it ran out)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == message_id, col(OutboxMessage.claim_token) == token)
        .values(claimed_until=None, claim_token=None, **values)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        return False
    if attempt is not None:
        session.add(attempt)
    return True


async def release(session: AsyncSession, ids: Sequence[int], token: str) -> None:
    if ids:
        await session.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.id).in_(ids), col(OutboxMessage.claim_token) == token)
            .values(claimed_until=None, claim_token=None)
        )


async def events(session: AsyncSession, sequences: Sequence[int]) -> dict[int, AuditEvent]:
    if not sequences:
        return {}
    rows = (
        await session.exec(select(AuditEvent).where(col(AuditEvent.sequence).in_(sequences)))
    ).all()
    return {row.sequence or 0: row for row in rows}


async def campaign_names(session: AsyncSession, ids: Sequence[str]) -> dict[str, str]:
    parsed = []
    for value in ids:
        try:
            parsed.append(uuid.UUID(value))
        except ValueError:
            continue
    if not parsed:
        return {}
    rows = (
        await session.exec(select(Campaign.id, Campaign.name).where(col(Campaign.id).in_(parsed)))
    ).all()
    return {str(cid): name for cid, name in rows}


async def slack_message_of(
    session: AsyncSession, *, kind: str, campaign_id: str | None, before_sequence: int
) -> OutboxMessage | None:
    """The newest Slack message of `kind` about `campaign_id` (None: about no campaign, the
    global switch) posted for an event before `before_sequence`: the message a later
    decision answers (chat.update)."""
    subject = (
        col(OutboxMessage.campaign_id).is_(None)
        if campaign_id is None
        else col(OutboxMessage.campaign_id) == campaign_id
    )
    query = (
        select(OutboxMessage)
        .where(
            col(OutboxMessage.destination) == SLACK,
            col(OutboxMessage.kind) == kind,
            col(OutboxMessage.slack_ts).is_not(None),
            col(OutboxMessage.audit_sequence) < before_sequence,
            subject,
        )
        .order_by(col(OutboxMessage.audit_sequence).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def for_events(session: AsyncSession, sequences: Sequence[int]) -> Sequence[OutboxMessage]:
    """The Slack rows of these audit events (the audit listing shows their timestamps)."""
    if not sequences:
        return []
    query = select(OutboxMessage).where(
        col(OutboxMessage.destination) == SLACK,
        col(OutboxMessage.audit_sequence).in_(sequences),
    )
    return (await session.exec(query)).all()


async def list_messages(
    session: AsyncSession,
    *,
    limit: int,
    destination: str | None = None,
    webhook_id: uuid.UUID | None = None,
    before_id: int | None = None,
    status: str | None = None,
) -> Sequence[OutboxMessage]:
    query = select(OutboxMessage).order_by(col(OutboxMessage.id).desc()).limit(limit)
    if destination is not None:
        query = query.where(col(OutboxMessage.destination) == destination)
    if webhook_id is not None:
        query = query.where(col(OutboxMessage.webhook_id) == webhook_id)
    if before_id is not None:
        query = query.where(col(OutboxMessage.id) < before_id)
    if status is not None:
        query = query.where(col(OutboxMessage.status) == status)
    return (await session.exec(query)).all()


async def attempts_of(
    session: AsyncSession, message_ids: Sequence[int]
) -> dict[int, list[DeliveryAttempt]]:
    if not message_ids:
        return {}
    rows = (
        await session.exec(
            select(DeliveryAttempt)
            .where(col(DeliveryAttempt.message_id).in_(message_ids))
            .order_by(col(DeliveryAttempt.message_id), col(DeliveryAttempt.attempt))
        )
    ).all()
    out: dict[int, list[DeliveryAttempt]] = {}
    for row in rows:
        out.setdefault(row.message_id, []).append(row)
    return out


async def pending_count(session: AsyncSession) -> int:
    query = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(col(OutboxMessage.status) == OutboxStatus.pending)
    )
    return int((await session.exec(query)).one())


async def newer_of_kind(
    session: AsyncSession, *, kind: str, campaign_id: str, destination: str, after_sequence: int
) -> bool:
    """Whether a later notification of `kind` about the campaign is bound for `destination`."""
    query = select(
        exists().where(
            col(OutboxMessage.kind) == kind,
            col(OutboxMessage.campaign_id) == campaign_id,
            col(OutboxMessage.destination) == destination,
            col(OutboxMessage.audit_sequence) > after_sequence,
        )
    )
    return bool((await session.execute(query)).scalar())
