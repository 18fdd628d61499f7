"""Writing notifications in the transaction of the decision they report.

`app.audit.append` links a transaction's audit events into the chain when the session
commits and adds them to the session with their sequence; the COMMIT's own flush inserts
them. This module's `before_flush` listener sees them there (new `AuditEvent` rows that
already carry a sequence) and adds, in that same flush, one outbox row per notification and
destination (`app.notify.kinds.plan`): the team channel, and every webhook subscribed to
the kind. So a decision and its notification commit or roll back together, whichever code
path made the decision and in whatever order the listeners were registered, and a worker
sends it later (`app.notify.dispatch`): Slack being slow or down never holds up a decision.

Importing this module registers the listener (`app.runtime` does, for every process).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session
from sqlmodel import col

from app.audit.models import AuditEvent
from app.notify.kinds import EventView, Planned, plan, subscribed
from app.notify.models import SLACK, OutboxMessage
from app.webhooks.models import Webhook


def webhook_destination(webhook_id: object) -> str:
    return f"webhook:{webhook_id}"


@event.listens_for(Session, "before_flush")
def _add_notifications(session: Session, _context: Any, _instances: Any) -> None:
    linked = [
        obj for obj in session.new if isinstance(obj, AuditEvent) and obj.sequence is not None
    ]
    if not linked:
        return
    planned = plan(EventView(e.sequence or 0, e.action, e.subject_id, e.reason) for e in linked)
    if not planned:
        return
    webhooks = session.execute(
        select(col(Webhook.id), col(Webhook.events)).where(col(Webhook.deleted_at).is_(None))
    ).all()
    for note in planned:
        session.add(_row(note, SLACK, None))
        for webhook_id, events in webhooks:
            if subscribed(events, note.kind):
                session.add(_row(note, webhook_destination(webhook_id), webhook_id))


def _row(note: Planned, destination: str, webhook_id: Any) -> OutboxMessage:
    return OutboxMessage(
        audit_sequence=note.sequence,
        kind=note.kind.value,
        destination=destination,
        webhook_id=webhook_id,
        campaign_id=note.campaign_id,
        details=note.details,
    )
