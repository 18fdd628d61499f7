"""Request and response shapes for approvals."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

# A binding as app.approval.binding writes it: a hex SHA-256.
Binding = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: (
        Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
        | None
    ) = None
    # The binding of the campaign as the approver read it (`binding` in
    # GET /v1/campaigns/{id}/approval): given, the approval is refused (409) if the campaign
    # has changed since, so what is approved is what was read.
    expected_binding: Binding | None = None


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
    # What the campaign is bound to as it is now (app.approval.binding): an approver who
    # read it passes this back as `expected_binding`, so an edit in between is refused.
    binding: str
