"""The sandbox provider: sends nothing, records what it would have sent."""

from __future__ import annotations

import uuid

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery.models import SandboxMessage
from app.delivery.payloads import apns_payload, fcm_message
from app.delivery.providers.base import Batch, Provider, ResultKind, SendResult


class SandboxProvider(Provider):
    name = "sandbox"

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], worker: str) -> None:
        self._sessionmaker = sessionmaker
        self._worker = worker

    async def send(self, batch: Batch) -> list[SendResult]:
        now = utcnow()
        rows = [
            {
                "campaign_id": uuid.UUID(batch.campaign_id),
                "delivery_id": m.delivery_id,
                "device_id": m.device_id,
                "platform": m.platform,
                "token": m.token,
                "apns_environment": m.apns_environment,
                "payload": (
                    apns_payload(batch.content, m.locale)
                    if m.platform == "ios"
                    else fcm_message(batch.content, m.locale)
                ),
                "worker": self._worker,
                "sent_at": now,
            }
            for m in batch.messages
        ]
        if rows:
            async with unit_of_work(self._sessionmaker) as session:
                await session.execute(insert(SandboxMessage.__table__), rows)  # type: ignore[attr-defined]
        return [
            SendResult(m.delivery_id, ResultKind.sent, message_id=f"sandbox-{m.delivery_id}")
            for m in batch.messages
        ]
