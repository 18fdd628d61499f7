"""Kill-switch queries: the switch's one row."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.killswitch.models import SWITCH_ID, KillSwitch


async def get(session: AsyncSession, *, lock: bool = False) -> KillSwitch | None:
    query = select(KillSwitch).where(col(KillSwitch.id) == SWITCH_ID)
    if lock:
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def create_released(session: AsyncSession) -> None:
    """Insert the row released, unless another transaction just did."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(KillSwitch.__table__)  # type: ignore[attr-defined]
        .values(id=SWITCH_ID, engaged=False, version=1)
        .on_conflict_do_nothing()
    )
