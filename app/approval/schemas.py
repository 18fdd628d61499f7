"""Request and response shapes for approvals."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: (
        Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
        | None
    ) = None


class ApprovalOut(BaseModel):
    id: uuid.UUID
    campaign_id: uuid.UUID
    person_id: uuid.UUID
    person_name: str
    channel: str
    comment: str | None
    # The guard override approved with the campaign, if any.
    override_reason: str | None
    approved_at: datetime
    # What it approved (app.approval.binding); it stands while this is the campaign's.
    binding: str


class ApprovalStatus(BaseModel):
    """Whether a campaign may start as far as four-eyes approval goes, and who may give it."""

    campaign_id: uuid.UUID
    # Whether this campaign needs an approval to start, and why.
    required: bool
    reasons: list[str]
    # An approval that covers the campaign as it is now, if one was given.
    approval: ApprovalOut | None
    waiting: bool
    # The guard override an approver approves with the campaign, if any.
    override_reason: str | None
    # Who may not approve: the people who created or edited it.
    authors: list[str]
    # Humans holding campaigns:approve (or admin) who are not among the authors.
    may_approve: list[str]
