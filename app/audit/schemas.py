from __future__ import annotations

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
    sequence: int
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None
