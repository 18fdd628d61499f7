"""Statements over `webhook`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.webhooks.models import Webhook


async def get(
    session: AsyncSession, webhook_id: uuid.UUID, *, lock: bool = False
) -> Webhook | None:
    return await session.get(Webhook, webhook_id, with_for_update=lock or None)


async def live(session: AsyncSession) -> Sequence[Webhook]:
    query = (
        select(Webhook)
        .where(col(Webhook.deleted_at).is_(None))
        .order_by(col(Webhook.created_at), col(Webhook.id))
    )
    return (await session.exec(query)).all()
