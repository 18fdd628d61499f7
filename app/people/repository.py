"""Statements over `person`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.people.models import Person


async def get(session: AsyncSession, person_id: uuid.UUID, *, lock: bool = False) -> Person | None:
    return await session.get(Person, person_id, with_for_update=lock or None)


async def by_name(session: AsyncSession, name: str) -> Person | None:
    return (await session.exec(select(Person).where(Person.name == name))).first()


async def by_slack_user_id(session: AsyncSession, slack_user_id: str) -> Person | None:
    query = select(Person).where(Person.slack_user_id == slack_user_id)
    return (await session.exec(query)).first()


async def list_people(session: AsyncSession) -> Sequence[Person]:
    return (await session.exec(select(Person).order_by(col(Person.name)))).all()


async def many(session: AsyncSession, ids: Sequence[uuid.UUID]) -> Sequence[Person]:
    if not ids:
        return []
    return (await session.exec(select(Person).where(col(Person.id).in_(ids)))).all()
