"""Segment and audience queries: the only place that builds statements over segments, and
the counts the form and the guard show of an audience."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audiences.models import Segment
from app.devices.models import Device


async def count_by_platform(session: AsyncSession, audience: ColumnElement[bool]) -> dict[str, int]:
    rows = (
        await session.execute(
            select(col(Device.platform), func.count())
            .where(audience)
            .group_by(col(Device.platform))
        )
    ).all()
    return {platform: int(n) for platform, n in rows}


async def count_by_timezone(
    session: AsyncSession, audience: ColumnElement[bool]
) -> dict[str | None, int]:
    """Devices of the audience by their stored time zone name (None: none set), in one
    grouped query."""
    rows = (
        await session.execute(
            select(col(Device.timezone), func.count())
            .where(audience)
            .group_by(col(Device.timezone))
        )
    ).all()
    return {timezone: int(n) for timezone, n in rows}


async def count_non_test(session: AsyncSession, audience: ColumnElement[bool]) -> int:
    query = (
        select(func.count())
        .select_from(Device)
        .where(audience, col(Device.is_test_device).is_(False))
    )
    return int((await session.execute(query)).scalar_one())


async def get(session: AsyncSession, segment_id: uuid.UUID) -> Segment | None:
    return await session.get(Segment, segment_id)


async def by_name(session: AsyncSession, name: str) -> Segment | None:
    return (await session.exec(select(Segment).where(col(Segment.name) == name))).first()


async def page(session: AsyncSession, *, limit: int | None, after: str | None) -> Sequence[Segment]:
    """By name; `after` is the last name of the previous page."""
    query = select(Segment).order_by(col(Segment.name)).limit(limit)
    if after is not None:
        query = query.where(col(Segment.name) > after)
    return (await session.exec(query)).all()
