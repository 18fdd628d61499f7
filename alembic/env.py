"""Alembic environment: async engines, PostgreSQL and SQLite from the same migrations."""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Connection

from alembic import context
from app.db.registry import metadata
from app.db.session import create_engine
from app.delivery.partitions import is_partition_name
from app.settings import Settings

config = context.config


def _url() -> str:
    return config.attributes.get("database_url") or Settings().effective_database_url


# On PostgreSQL each partition of the ledger holds (campaign, device) unique, not the
# partitioned table (app.delivery.partitions).
_PER_PARTITION = {"uq_delivery_campaign_id_device_id"}


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    # The ledger's partitions (PostgreSQL) are made at run time, not by the models.
    return not (type_ == "table" and name is not None and is_partition_name(name))


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    return not (type_ == "unique_constraint" and name in _PER_PARTITION)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=_include_name,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
    await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
    else:
        asyncio.run(_run_async())
