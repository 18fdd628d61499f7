"""A sender of the previous release, for tests that migrate with a campaign sending: the
claim and record statements any schema version since 0005 takes (the ledger's id, campaign,
status and lease columns), so it runs at the old revision, through the migration and at the
new one, as workers of the version before go on running while a deployment migrates."""

from __future__ import annotations

import asyncio
import threading
import uuid

from sqlalchemy import text

from app.db.session import unit_of_work
from app.runtime import Runtime

_CLAIM = text(
    """
    UPDATE delivery SET status = 'sending', lease_token = :lease,
        lease_until = now() + interval '1 minute', attempts = attempts + 1, updated_at = now()
    WHERE id IN (
        SELECT id FROM delivery
        WHERE campaign_id = :campaign AND status = 'queued'
        ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)
_RECORD = text(
    """
    UPDATE delivery SET status = 'sent', provider = 'sandbox', sent_at = now(),
        lease_token = NULL, lease_until = NULL, updated_at = now()
    WHERE id = ANY(:ids) AND lease_token = :lease AND status = 'sending'
    """
)


async def send(db: Runtime, campaign_id: uuid.UUID, limit: int) -> int:
    """Claim and record up to `limit` queued rows; returns rows sent."""
    lease = uuid.uuid4()
    async with unit_of_work(db.sessionmaker) as session:
        claimed = [
            r[0]
            for r in await session.execute(
                _CLAIM, {"lease": lease, "campaign": campaign_id, "limit": limit}
            )
        ]
    if not claimed:
        return 0
    async with unit_of_work(db.sessionmaker) as session:
        result = await session.execute(_RECORD, {"ids": claimed, "lease": lease})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def send_until(db: Runtime, campaign_id: uuid.UUID, stop: threading.Event) -> int:
    """Five rows at a time until told to stop; returns rows sent."""
    sent = 0
    while not stop.is_set():
        sent += await send(db, campaign_id, 5)
        await asyncio.sleep(0.005)
    return sent
