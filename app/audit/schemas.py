from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEventOut(BaseModel):
    id: int
    occurred_at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str | None
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    # Who acted (null on events written before people were recorded).
    person_id: uuid.UUID | None = None
    person_name: str | None = None
    key_id: uuid.UUID | None = None
    channel: str | None = None
    hash_version: int = 1
    sequence: int
    hash: str
    # The team channel's message of this event, once Slack took it (app.notify): the channel
    # and the message's timestamp, Slack's id for it.
    slack_channel: str | None = None
    slack_ts: str | None = None


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None
