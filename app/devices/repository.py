"""Device queries. Registration is an upsert keyed by token: one row per token, ever."""

from __future__ import annotations

import operator
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Table, func, literal_column, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audiences.versions import version_key
from app.devices import lean
from app.devices.models import Device, DeviceStatus, Platform
from app.rollout.bucketing import device_bucket_of_bytes

# Columns a registration may change on an existing token. Never is_test_device (admin only),
# never bucket (stable forever), never created_at.
_REGISTRATION_COLUMNS = (
    "platform",
    "user_id",
    "locale",
    "timezone",
    "app_version",
    "app_version_key",
    "tags",
    "attributes",
    "apns_environment",
)

_table: Table = Device.__table__  # type: ignore[attr-defined]


def _insert_for(session: AsyncSession) -> Any:
    return _insert_of(session.get_bind().dialect.name)


def _insert_of(dialect: str) -> Any:
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
    stmt = _upsert(session).returning(_table.c.id, _table.c.token)
    result = await session.execute(stmt, list(rows))
    stored = {token: ident for ident, token in result.all()}
    return [stored[row["token"]] for row in rows]


async def upsert_one(
    db: AsyncSession | AsyncConnection, row: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    """`upsert` of one row in one statement: the row as stored (every column) and whether it
    was created. `db` is a session, or a connection whose transaction the caller commits.

    Every app registers its token on every start: on PostgreSQL this statement is sent by
    the driver itself, in the transaction `db` has begun if any, else on its own (one
    statement is atomic), because building the statement and its cache key in SQLAlchemy
    cost more than running it."""
    connection = db if isinstance(db, AsyncConnection) else await db.connection()
    dialect = connection.dialect.name
    if dialect != "postgresql":
        stmt = _upsert_into(_insert_of(dialect)).returning(*_table.c)
        result = await connection.execute(stmt, dict(row))
        stored = dict(result.mappings().one())
        return stored, bool(stored["id"] == row["id"])
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    record = list(_row_values(row))
    for index in _JSON_INDEXES:
        record[index] = orjson.dumps(record[index]).decode()
    answer = await driver.fetchrow(_UPSERT_ONE, *record)
    # JSON goes in as text and comes back decoded (the codecs SQLAlchemy sets on connections).
    return dict(zip(_COPY_COLUMNS, answer, strict=False)), bool(answer["created"])


def _upsert(session: AsyncSession) -> Any:
    return _upsert_into(_insert_for(session))


def _upsert_into(stmt: Any) -> Any:
    excluded = stmt.excluded
    updates: dict[str, Any] = {name: excluded[name] for name in _REGISTRATION_COLUMNS}
    updates["last_seen_at"] = excluded.last_seen_at
    updates["updated_at"] = excluded.updated_at
    # A token registered again is alive again, whatever a provider said of it before.
    updates["status"] = literal_column(f"'{DeviceStatus.active.value}'")
    return stmt.on_conflict_do_update(index_elements=[_table.c.token], set_=updates)


_COPY_COLUMNS = (
    "id",
    "token",
    *_REGISTRATION_COLUMNS,
    "is_test_device",
    "status",
    "bucket",
    "last_seen_at",
    "created_at",
    "updated_at",
)
_JSON_INDEXES = tuple(i for i, c in enumerate(_COPY_COLUMNS) if c in {"tags", "attributes"})
_row_values = operator.itemgetter(*_COPY_COLUMNS)
# What a registration changes on a token already known (the same as `_upsert`).
_ON_CONFLICT = f"""
    ON CONFLICT (token) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _REGISTRATION_COLUMNS)},
        last_seen_at = EXCLUDED.last_seen_at,
        updated_at = EXCLUDED.updated_at,
        status = 'active'
"""
_UPSERT_FROM_STAGING = f"""
    INSERT INTO device ({", ".join(_COPY_COLUMNS)})
    SELECT {", ".join(_COPY_COLUMNS)} FROM device_import
    {_ON_CONFLICT}
    RETURNING (xmax = 0)
"""
_UPSERT_ONE = f"""
    INSERT INTO device ({", ".join(_COPY_COLUMNS)})
    VALUES ({", ".join(f"${i}" for i in range(1, len(_COPY_COLUMNS) + 1))})
    {_ON_CONFLICT}
    RETURNING {", ".join(_COPY_COLUMNS)}, (xmax = 0) AS created
"""


async def upsert_bulk(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> int:
    """Upsert many rows with distinct tokens; returns how many were created.

    On PostgreSQL the rows travel by COPY into a per-transaction staging table and are
    merged by one INSERT ... ON CONFLICT, which is an order of magnitude faster than a
    multi-row INSERT. Elsewhere it is the ordinary upsert.
    """
    if not rows:
        return 0
    if session.get_bind().dialect.name != "postgresql":
        stored = await upsert(session, rows)
        return sum(1 for row, ident in zip(rows, stored, strict=True) if row["id"] == ident)
    # Through the session first: that opens its transaction, so COPY and merge below are
    # one atomic unit with the rest of the session's work (the driver alone autocommits).
    await session.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS device_import "
            "(LIKE device INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
    )
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    records = []
    for row in rows:
        record = list(_row_values(row))
        for index in _JSON_INDEXES:
            record[index] = orjson.dumps(record[index]).decode()
        records.append(record)
    await driver.copy_records_to_table("device_import", records=records, columns=_COPY_COLUMNS)
    created = await driver.fetch(_UPSERT_FROM_STAGING)
    return sum(1 for (inserted,) in created if inserted)


# The bulk import's staging table: one per connection, emptied by every commit. Only the
# columns a registration carries; the merge below fills in the rest.
_CREATE_STAGING = """
    CREATE TEMP TABLE IF NOT EXISTS device_staging (
        id uuid, bucket bigint, token text, platform text, user_id text, locale text,
        timezone text, app_version text, app_version_key text, tags jsonb, attributes jsonb,
        apns_environment text
    ) ON COMMIT DELETE ROWS
"""
# The staging table's columns, in COPY order: identity, then what a registration sets.
_STAGED = ("id", "bucket", "token", *_REGISTRATION_COLUMNS)
# Timestamps and the fixed columns come from the database: now() is the transaction's
# start, one value for the whole batch, as a registration's row proposes.
_MERGE_STAGED = f"""
    WITH merged AS (
        INSERT INTO device ({", ".join(_STAGED)}, is_test_device, status, last_seen_at,
                            created_at, updated_at)
        SELECT {", ".join(_STAGED)}, false, 'active', now(), now(), now() FROM device_staging
        ON CONFLICT (token) DO UPDATE SET
            {", ".join(f"{c} = EXCLUDED.{c}" for c in _REGISTRATION_COLUMNS)},
            last_seen_at = EXCLUDED.last_seen_at,
            updated_at = EXCLUDED.updated_at,
            status = 'active'
        RETURNING (xmax = 0) AS created
    )
    SELECT count(*) FILTER (WHERE created) FROM merged
"""
# COPY's text format: a backslash starts an escape; tab, newline and carriage return end
# a field or a row. Tokens, locales, versions, zones and platforms cannot hold them
# (checked), so only user ids need the full treatment and JSON only its backslashes.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def _copy_text(value: str | None) -> str:
    return _NULL if value is None else value.translate(_COPY_ESCAPES)


def _copy_json(value: list[str] | dict[str, Any]) -> str:
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    return orjson.dumps(value).decode().replace("\\", "\\\\")


def copy_line(values: lean.Values, ident: bytes) -> str:
    """One checked registration as a line of the staging table's COPY text (no newline);
    `ident` is the 16 bytes of the id proposed for a new token."""
    token, platform, user_id, locale, zone, version, tags, attributes, env = values
    return "\t".join(
        (
            ident.hex(),
            str(device_bucket_of_bytes(ident)),
            token.replace("\\", "\\\\"),
            platform,
            _NULL if user_id is None else _copy_text(user_id),
            _NULL if locale is None else locale,
            _NULL if zone is None else zone,
            _NULL if version is None else version,
            (version_key(version) or _NULL) if version else _NULL,
            _copy_json(list(dict.fromkeys(tags)) if len(tags) > 1 else tags),
            _copy_json(attributes),
            _NULL if env is None else env,
        )
    )


def copy_text(lines: Iterable[str]) -> bytes:
    """COPY text of lines made by `copy_line`."""
    return "".join(f"{line}\n" for line in lines).encode()


def copy_rows(values: Sequence[lean.Values], ids: Sequence[bytes]) -> bytes:
    return copy_text(copy_line(v, ident) for v, ident in zip(values, ids, strict=True))


async def _one(data: bytes) -> AsyncIterator[bytes]:
    # asyncpg reads bytes as a file name; an async iterable is sent as it is.
    yield data


async def merge_copy_text(session: AsyncSession, rows: bytes) -> int:
    """Upsert registrations with distinct tokens, given as the staging table's COPY text
    (`copy_line`, `copy_text`), on PostgreSQL; returns how many were created.

    The rows travel by COPY (text format, built without a Python object per column) into a
    per-connection staging table and are merged by one INSERT ... ON CONFLICT in the
    session's transaction: through the session, which opens that transaction, so COPY and
    merge are one atomic unit with the rest of its work (the driver alone autocommits)."""
    await session.execute(text(_CREATE_STAGING))
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_to_table("device_staging", source=_one(rows), columns=_STAGED, format="text")
    return int(await driver.fetchval(_MERGE_STAGED))


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


async def count_matching(session: AsyncSession, where: Any) -> int:
    return int((await session.exec(select(func.count()).select_from(Device).where(where))).one())


async def set_test_device_where(
    session: AsyncSession, where: Any, *, is_test: bool, now: datetime
) -> int:
    """Mark (or unmark) every device matching ``where`` in one statement; how many changed."""
    result = await session.exec(
        _table.update()
        .where(where, _table.c.is_test_device.is_not(is_test))
        .values(is_test_device=is_test, updated_at=now)
    )
    return int(result.rowcount)
