"""The sandbox provider: sends nothing, records what it would have sent.

For demos and rehearsals, a token can ask for a provider's answer: a token starting with
`sandbox-invalid` is answered as an unregistered token, one starting with `sandbox-fail` as a
permanent failure; every other token is "sent". Nothing is recorded for those two, as a
real provider would deliver nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery.models import SandboxMessage
from app.delivery.payloads import (
    apns_payload,
    apns_with_ref,
    collapse_identity,
    fcm_message,
    fcm_with_ref,
    ref_of,
)
from app.delivery.providers.base import (
    Batch,
    Message,
    Provider,
    ResultKind,
    SendResult,
    stopped,
)

INVALID_PREFIX = "sandbox-invalid"
FAIL_PREFIX = "sandbox-fail"


class SandboxProvider(Provider):
    name = "sandbox"

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], worker: str) -> None:
        self._sessionmaker = sessionmaker
        self._worker = worker

    async def send(self, batch: Batch) -> list[SendResult]:
        now = utcnow()
        if batch.fence is not None and not batch.fence.open():
            return [stopped(m.delivery_id) for m in batch.messages]
        results = [_answer(m) for m in batch.messages]
        delivered = {r.delivery_id for r in results if r.kind is ResultKind.sent}
        # Built once per (platform, locale), as the real providers do, then copied with each
        # message's delivery reference.
        built: dict[tuple[str, str | None], dict[str, Any]] = {}
        collapse = collapse_identity(batch.content, batch.campaign_id)

        def payload(m: Message) -> dict[str, Any]:
            key = (m.platform, m.locale)
            if key not in built:
                built[key] = (
                    apns_payload(batch.content, m.locale)
                    if m.platform == "ios"
                    else fcm_message(batch.content, m.locale, collapse)
                )
            with_ref = apns_with_ref if m.platform == "ios" else fcm_with_ref
            return with_ref(built[key], ref_of(m.delivery_id))

        rows = [
            {
                "campaign_id": uuid.UUID(batch.campaign_id),
                "delivery_id": m.delivery_id,
                "device_id": m.device_id,
                "platform": m.platform,
                "token": m.token,
                "apns_environment": m.apns_environment,
                "payload": payload(m),
                "worker": self._worker,
                "sent_at": now,
            }
            for m in batch.messages
            if m.delivery_id in delivered
        ]
        if rows:
            async with unit_of_work(self._sessionmaker) as session:
                await session.execute(insert(SandboxMessage.__table__), rows)  # type: ignore[attr-defined]
        return results


def _answer(message: Message) -> SendResult:
    if message.token.startswith(INVALID_PREFIX):
        return SendResult(
            message.delivery_id,
            ResultKind.invalid_token,
            error_code="UNREGISTERED",
            detail="sandbox: the token asked to be treated as unregistered",
        )
    if message.token.startswith(FAIL_PREFIX):
        return SendResult(
            message.delivery_id,
            ResultKind.failed,
            error_code="INVALID_ARGUMENT",
            detail="sandbox: the token asked for a permanent failure",
        )
    return SendResult(
        message.delivery_id, ResultKind.sent, message_id=f"sandbox-{message.delivery_id}"
    )
