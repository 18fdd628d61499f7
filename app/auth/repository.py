from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.auth.models import ApiKey


async def by_prefix(session: AsyncSession, prefix: str) -> ApiKey | None:
    result = await session.exec(select(ApiKey).where(ApiKey.prefix == prefix))
    return result.first()


async def watermark(session: AsyncSession) -> tuple[object, ...]:
    """What changes whenever a key is created, revoked or deleted (app.auth.key_cache):
    keys are never un-revoked, so counts and newest instants only move one way."""
    query = select(
        func.count(),
        func.count(col(ApiKey.revoked_at)),
        func.max(col(ApiKey.created_at)),
        func.max(col(ApiKey.revoked_at)),
    )
    return tuple((await session.exec(query)).one())


async def get(session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def list_keys(session: AsyncSession, *, include_revoked: bool) -> Sequence[ApiKey]:
    query = select(ApiKey).order_by(col(ApiKey.created_at))
    if not include_revoked:
        query = query.where(col(ApiKey.revoked_at).is_(None))
    return (await session.exec(query)).all()


async def active_keys_of(session: AsyncSession, person_id: uuid.UUID) -> Sequence[ApiKey]:
    query = select(ApiKey).where(ApiKey.person_id == person_id, col(ApiKey.revoked_at).is_(None))
    return (await session.exec(query.order_by(col(ApiKey.created_at)))).all()


async def active_scopes_by_person(session: AsyncSession) -> dict[uuid.UUID, set[str]]:
    """Each person's scopes over their keys that are not revoked (people without one are
    left out)."""
    query = select(ApiKey.person_id, ApiKey.scopes).where(col(ApiKey.revoked_at).is_(None))
    held: dict[uuid.UUID, set[str]] = {}
    for person_id, scopes in (await session.exec(query)).all():
        held.setdefault(person_id, set()).update(scopes)
    return held
