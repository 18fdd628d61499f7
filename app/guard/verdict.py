"""What the guard says about a campaign: its findings and whether they block (API answers
carry it as `guard`)."""

from __future__ import annotations

from pydantic import BaseModel


class GuardFinding(BaseModel):
    rule: str
    code: str
    field: str
    message: str
    match: str | None = None


class GuardVerdict(BaseModel):
    allowed: bool
    overridable: bool
    overridden: bool = False
    findings: list[GuardFinding]
