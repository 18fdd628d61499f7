"""Appending to the hash chain, inside the transaction that records the event.

Every flush that inserts audit events first takes the chain's lock, then reads the head
(highest sequence) and links the new events after it. The lock is held until the
transaction ends, so two transactions can never link to the same head: the chain cannot
fork. PostgreSQL: a transaction-scoped advisory lock (cheap, no row churn). SQLite: a no-op
UPDATE, which takes the database's single write lock before the head is read (a plain
SELECT would read outside the write transaction). The unique index on `sequence` is a
second line: a fork would be a duplicate sequence and fail to commit.

Callers need do nothing: `audit.record` adds an event to the session as before.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.orm import Session

from app.audit import chain
from app.audit.models import AuditEvent

# pg_advisory_xact_lock key: an arbitrary constant, owned by the audit chain alone.
CHAIN_LOCK_KEY = 0x57A7EC4A0D17


def chain_fields(event: AuditEvent, sequence: int) -> chain.ChainFields:
    return chain.ChainFields(
        sequence=sequence,
        occurred_at=event.occurred_at,
        actor=event.actor,
        action=event.action,
        subject_type=event.subject_type,
        subject_id=event.subject_id,
        reason=event.reason,
        before=event.before,
        after=event.after,
    )


def _lock_and_read_head(session: Session) -> tuple[int, str]:
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    else:
        connection.execute(text("UPDATE audit_event SET id = id WHERE 0 = 1"))
    head = connection.execute(
        text("SELECT sequence, hash FROM audit_event ORDER BY sequence DESC LIMIT 1")
    ).first()
    if head is None:
        return 0, chain.GENESIS
    return int(head[0]), str(head[1])


@event.listens_for(Session, "before_flush")
def _link_new_events(session: Session, _context: Any, _instances: Any) -> None:
    new = [obj for obj in session.new if isinstance(obj, AuditEvent) and obj.hash is None]
    if not new:
        return
    # The order the session will insert them in: the order they were recorded.
    new.sort(key=lambda obj: inspect(obj).insert_order or 0)
    sequence, prev_hash = _lock_and_read_head(session)
    for audit_event in new:
        sequence += 1
        audit_event.sequence = sequence
        audit_event.prev_hash = prev_hash
        audit_event.hash = chain.digest(chain_fields(audit_event, sequence), prev_hash)
        prev_hash = audit_event.hash
