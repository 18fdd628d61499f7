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


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None
