"""What the rest of Wavecast reads of the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from app.notify import repository
from app.notify.models import OutboxStatus


async def slack_posts(session: AsyncSession, sequences: Sequence[int]) -> dict[int, dict[str, str]]:
    """For each audit event posted to the team channel: its `slack_channel` and `slack_ts`
    (the message's id in Slack), keyed by the event's sequence."""
    rows = await repository.for_events(session, sequences)
    return {
        row.audit_sequence: {"slack_channel": row.slack_channel or "", "slack_ts": row.slack_ts}
        for row in rows
        if row.status == OutboxStatus.sent and row.slack_ts is not None
    }
