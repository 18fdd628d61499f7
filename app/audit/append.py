"""Appending to the hash chain, inside the transaction that records the event.

`audit.record` only queues an event on the session. When the session commits, the queued
events are linked and inserted last: every other change of the transaction is flushed
first, then the chain's lock is taken, the head (highest sequence) read, and the events
linked after it and inserted; the COMMIT follows at once. So:

- two transactions can never link to the same head (the lock is held until the transaction
  ends): the chain cannot fork. PostgreSQL: a transaction-scoped advisory lock (no row
  churn). SQLite: a no-op UPDATE, which takes the database's single write lock before the
  head is read. The unique index on `sequence` is a second line of defence;
- the lock is the last one a transaction takes and is held only for one INSERT and the
  COMMIT: a transaction holding it never waits for a row lock, so it cannot deadlock with
  another, and hot paths (campaign transitions) are serialised for the shortest time;
- a rolled-back transaction leaves no event and no gap.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from app.audit import chain
from app.audit.models import AuditEvent

# pg_advisory_xact_lock key: an arbitrary constant, owned by the audit chain alone.
CHAIN_LOCK_KEY = 0x57A7EC4A0D17
_PENDING = "audit_pending"


def enqueue(session: Session, audit_event: AuditEvent) -> None:
    session.info.setdefault(_PENDING, []).append(audit_event)


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
        person_id=None if event.person_id is None else str(event.person_id),
        person_name=event.person_name,
        key_id=None if event.key_id is None else str(event.key_id),
        channel=event.channel,
        version=event.hash_version,
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


@event.listens_for(Session, "before_commit")
def _link_pending_events(session: Session) -> None:
    pending: list[AuditEvent] = session.info.pop(_PENDING, [])
    if not pending:
        return
    session.flush()  # every other change first: its row locks are taken before the chain's
    sequence, prev_hash = _lock_and_read_head(session)
    for audit_event in pending:  # in the order they were recorded
        sequence += 1
        audit_event.sequence = sequence
        audit_event.prev_hash = prev_hash
        audit_event.hash = chain.digest(chain_fields(audit_event, sequence), prev_hash)
        prev_hash = audit_event.hash
    session.add_all(pending)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending_events(session: Session, previous: Any) -> None:
    if not getattr(previous, "nested", False):  # a savepoint's rollback keeps the outer events
        session.info.pop(_PENDING, None)
