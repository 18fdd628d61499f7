"""Saved segments and audience resolution (rules → SQL filter over active devices)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audiences import repository
from app.audiences.models import Segment
from app.audiences.rules import RuleErrors, compile_rules, parse_rules
from app.audit import service as audit
from app.auth.principal import Principal
from app.db.types import utcnow
from app.devices.models import Device, DeviceStatus
from app.errors import FieldError, Problem, not_found, validation_problem


def checked_rules(raw: Any, *, field: str) -> dict[str, Any]:
    """The canonical form of a rule tree, or a 422 naming every bad node under `field`."""
    try:
        rule = parse_rules(raw)
    except RuleErrors as exc:
        raise validation_problem(
            [FieldError(field + e.path.removeprefix("rules"), e.message) for e in exc.errors],
            title="Invalid audience rules",
        ) from None
    canonical: dict[str, Any] = rule.to_json()
    return canonical


def audience_filter(rules: dict[str, Any], *, now: datetime) -> ColumnElement[bool]:
    """Active devices matching the rules. Rules stored in the database are parsed again, and
    a tree that no longer parses raises `RuleErrors` (the engine and the send loop pause the
    campaign then): it never widens to anyone."""
    return and_(
        col(Device.status) == DeviceStatus.active.value,
        compile_rules(parse_rules(rules), now=now),
    )


async def estimate(session: AsyncSession, rules: dict[str, Any]) -> tuple[int, dict[str, int]]:
    counted = await repository.count_by_platform(session, audience_filter(rules, now=utcnow()))
    by_platform = {"android": 0, "ios": 0} | counted
    return sum(by_platform.values()), by_platform


async def count_by_timezone(session: AsyncSession, rules: dict[str, Any]) -> dict[str | None, int]:
    """The audience's devices by stored time zone name (None: none set)."""
    return await repository.count_by_timezone(session, audience_filter(rules, now=utcnow()))


async def count_non_test(session: AsyncSession, rules: dict[str, Any]) -> int:
    return await repository.count_non_test(session, audience_filter(rules, now=utcnow()))


async def resolve(
    session: AsyncSession, *, segment_id: uuid.UUID | None, rules: Any, field: str = "audience"
) -> tuple[dict[str, Any], uuid.UUID | None]:
    if segment_id is not None:
        segment = await repository.get(session, segment_id)
        if segment is None:
            raise validation_problem(
                [FieldError(f"{field}.segment_id", f"no segment with id {segment_id}")]
            )
        return checked_rules(segment.rules, field=f"{field}.segment.rules"), segment.id
    return checked_rules(rules, field=f"{field}.rules"), None


# ---------------------------------------------------------------- segments
async def create_segment(
    session: AsyncSession, principal: Principal, *, name: str, rules: Any
) -> Segment:
    canonical = checked_rules(rules, field="rules")
    await _name_free(session, name, None)
    segment = Segment(name=name, rules=canonical, created_by=principal.actor)
    session.add(segment)
    audit.record(
        session,
        principal,
        "segment.created",
        subject_type="segment",
        subject_id=segment.id,
        after={"name": name, "rules": canonical},
    )
    await _flush_named(session, name)
    return segment


async def _name_free(session: AsyncSession, name: str, own_id: uuid.UUID | None) -> None:
    clash = await repository.by_name(session, name)
    if clash is not None and clash.id != own_id:
        raise Problem(
            409,
            "Conflict",
            f"a segment named {name!r} already exists",
            errors=[FieldError("name", "already used by another segment")],
        )


async def _flush_named(session: AsyncSession, name: str) -> None:
    """Two requests taking the same name at once both pass `_name_free`: the unique index
    refuses the second, answered as the conflict it is, not a server error."""
    try:
        await session.flush()
    except IntegrityError as exc:
        # PostgreSQL names the constraint, SQLite the column; anything else is not a clash.
        if not any(marker in str(exc.orig) for marker in ("uq_segment_name", "segment.name")):
            raise
        raise Problem(
            409,
            "Conflict",
            f"a segment named {name!r} was created meanwhile",
            errors=[FieldError("name", "already used by another segment")],
        ) from None


async def get_segment(session: AsyncSession, segment_id: uuid.UUID) -> Segment:
    segment = await repository.get(session, segment_id)
    if segment is None:
        raise not_found("Segment", segment_id)
    return segment


async def list_segments(
    session: AsyncSession, *, limit: int | None = None, after: str | None = None
) -> Sequence[Segment]:
    return await repository.page(session, limit=limit, after=after)


async def update_segment(
    session: AsyncSession,
    principal: Principal,
    segment_id: uuid.UUID,
    *,
    name: str | None,
    rules: Any | None,
) -> Segment:
    segment = await get_segment(session, segment_id)
    before = {"name": segment.name, "rules": segment.rules}
    if name is not None and name != segment.name:
        await _name_free(session, name, segment.id)
        segment.name = name
    if rules is not None:
        segment.rules = checked_rules(rules, field="rules")
    segment.updated_at = utcnow()
    session.add(segment)
    audit.record(
        session,
        principal,
        "segment.updated",
        subject_type="segment",
        subject_id=segment.id,
        before=before,
        after={"name": segment.name, "rules": segment.rules},
    )
    await _flush_named(session, segment.name)
    return segment


async def delete_segment(
    session: AsyncSession, principal: Principal, segment_id: uuid.UUID
) -> None:
    """Campaigns keep their own copy of the rules, so deleting a segment changes no campaign."""
    segment = await get_segment(session, segment_id)
    audit.record(
        session,
        principal,
        "segment.deleted",
        subject_type="segment",
        subject_id=segment.id,
        before={"name": segment.name, "rules": segment.rules},
    )
    await session.delete(segment)
    await session.flush()
