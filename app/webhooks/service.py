"""Webhooks of marketing tools: subscribe a URL to notification kinds, list, delete; and each
one's deliveries. Every change is audited (the secret never is)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from app import urls
from app.audit import service as audit
from app.auth.principal import Principal
from app.db.types import utcnow
from app.errors import FieldError, not_found, validation_problem
from app.notify import repository as outbox
from app.notify.kinds import Kind
from app.notify.models import DeliveryAttempt, OutboxMessage
from app.webhooks import repository
from app.webhooks.models import Webhook
from app.webhooks.signing import new_secret

MAX_URL_LENGTH = 2000
EVENT_NAMES = frozenset(k.value for k in Kind) | {"*"}


def url_problems(url: str) -> list[str]:
    """Why `url` is no webhook address (`app.urls.url_problems`)."""
    return urls.url_problems(url, max_length=MAX_URL_LENGTH)


def event_problems(events: Sequence[str]) -> list[FieldError]:
    errors = [
        FieldError(
            f"events[{i}]",
            f"unknown event {name!r}; one of: {', '.join(sorted(EVENT_NAMES))}",
        )
        for i, name in enumerate(events)
        if name not in EVENT_NAMES
    ]
    if not events:
        errors.append(FieldError("events", 'name at least one event, or "*" for every event'))
    return errors


async def create(
    session: AsyncSession, principal: Principal, *, url: str, events: Sequence[str]
) -> Webhook:
    errors = [FieldError("url", p) for p in url_problems(url)] + event_problems(events)
    if errors:
        raise validation_problem(errors)
    webhook = Webhook(
        url=url,
        events=sorted(set(events)),
        secret=new_secret(),
        created_by=principal.actor,
    )
    session.add(webhook)
    await session.flush()
    audit.record(
        session,
        principal,
        "webhook.created",
        subject_type="webhook",
        subject_id=webhook.id,
        after={"url": url, "events": webhook.events},
    )
    return webhook


async def get(session: AsyncSession, webhook_id: uuid.UUID) -> Webhook:
    webhook = await repository.get(session, webhook_id)
    if webhook is None or webhook.deleted_at is not None:
        raise not_found("webhook", webhook_id)
    return webhook


async def list_live(session: AsyncSession) -> Sequence[Webhook]:
    return await repository.live(session)


async def delete(session: AsyncSession, principal: Principal, webhook_id: uuid.UUID) -> None:
    """Nothing more is sent to it; what was delivered stays listed."""
    webhook = await repository.get(session, webhook_id, lock=True)
    if webhook is None or webhook.deleted_at is not None:
        raise not_found("webhook", webhook_id)
    webhook.deleted_at = utcnow()
    session.add(webhook)
    audit.record(
        session,
        principal,
        "webhook.deleted",
        subject_type="webhook",
        subject_id=webhook.id,
        before={"url": webhook.url, "events": webhook.events},
    )
    await session.flush()


@dataclass(frozen=True)
class Delivery:
    message: OutboxMessage
    attempts: list[DeliveryAttempt]


async def deliveries(
    session: AsyncSession, webhook_id: uuid.UUID, *, limit: int, before_id: int | None
) -> list[Delivery]:
    """The webhook's deliveries, newest first, each with every attempt made (also after the
    webhook was deleted)."""
    webhook = await repository.get(session, webhook_id)
    if webhook is None:
        raise not_found("webhook", webhook_id)
    rows = await outbox.list_messages(
        session, limit=limit, webhook_id=webhook_id, before_id=before_id
    )
    tries = await outbox.attempts_of(session, [r.id for r in rows if r.id is not None])
    return [Delivery(r, tries.get(r.id or 0, [])) for r in rows]
