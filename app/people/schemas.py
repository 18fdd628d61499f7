"""Request and response shapes for people."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from app.people.models import PersonKind

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Email = Annotated[
    str,
    StringConstraints(max_length=320, strip_whitespace=True, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
# Slack member ids: U (or W on Enterprise Grid) then upper-case letters and digits.
SlackUserId = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[UW][A-Z0-9]{2,31}$")
]


class PersonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    kind: PersonKind
    email: Email | None = None
    slack_user_id: SlackUserId | None = None


class PersonPatch(BaseModel):
    """Only the fields sent change; `email` and `slack_user_id` may be set to null."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    kind: PersonKind | None = None
    email: Email | None = None
    slack_user_id: SlackUserId | None = None


class PersonOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: PersonKind
    email: str | None
    slack_user_id: str | None
    # The union of the scopes of the person's keys that are not revoked.
    scopes: list[str]
    created_at: datetime
    updated_at: datetime
