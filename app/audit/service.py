"""Recording decisions. Callers pass the session of the change being recorded, so the event
commits or rolls back together with it: there is never a change without its record."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

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
    session.add(event)
    return event
