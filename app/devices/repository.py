"""Device queries. Registration is an upsert keyed by token: one row per token, ever."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.devices.models import Device, DeviceStatus, Platform

# Columns a registration may change on an existing token. Never is_test_device (admin only),
# never bucket (stable forever), never created_at.
_REGISTRATION_COLUMNS = (
    "platform",
    "user_id",
    "locale",
    "timezone",
    "app_version",
    "tags",
    "attributes",
    "apns_environment",
)

_table: Table = Device.__table__  # type: ignore[attr-defined]


def _insert_for(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(_table)
    if dialect == "sqlite":
        return sqlite.insert(_table)
    raise RuntimeError(f"unsupported database dialect {dialect}")


async def upsert(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
    """Insert or update devices by token; returns the id stored for each row, in order.

    A returned id equal to the id proposed in the row means the row was created. Rows must
    have distinct tokens (one statement cannot touch the same row twice).
    """
    if not rows:
        return []
    stmt = _insert_for(session)
    excluded = stmt.excluded
    updates: dict[str, Any] = {name: excluded[name] for name in _REGISTRATION_COLUMNS}
    updates["last_seen_at"] = excluded.last_seen_at
    updates["updated_at"] = excluded.updated_at
    # A token registered again is alive again, whatever a provider said of it before.
    updates["status"] = literal_column(f"'{DeviceStatus.active.value}'")
    stmt = stmt.on_conflict_do_update(index_elements=[_table.c.token], set_=updates).returning(
        _table.c.id, _table.c.token
    )
    result = await session.execute(stmt, list(rows))
    stored = {token: ident for ident, token in result.all()}
    return [stored[row["token"]] for row in rows]


async def get(session: AsyncSession, device_id: uuid.UUID) -> Device | None:
    return await session.get(Device, device_id)


async def list_devices(
    session: AsyncSession,
    *,
    limit: int,
    after: uuid.UUID | None,
    platform: Platform | None = None,
    status: DeviceStatus | None = None,
    user_id: str | None = None,
    token: str | None = None,
    is_test_device: bool | None = None,
    locale: str | None = None,
    seen_since: datetime | None = None,
) -> Sequence[Device]:
    query = select(Device).order_by(col(Device.id)).limit(limit)
    if after is not None:
        query = query.where(col(Device.id) > after)
    if platform is not None:
        query = query.where(Device.platform == platform)
    if status is not None:
        query = query.where(Device.status == status)
    if user_id is not None:
        query = query.where(Device.user_id == user_id)
    if token is not None:
        query = query.where(Device.token == token)
    if is_test_device is not None:
        query = query.where(Device.is_test_device == is_test_device)
    if locale is not None:
        query = query.where(Device.locale == locale)
    if seen_since is not None:
        query = query.where(col(Device.last_seen_at) >= seen_since)
    return (await session.exec(query)).all()


async def count(session: AsyncSession) -> int:
    return int((await session.exec(select(func.count()).select_from(Device))).one())
