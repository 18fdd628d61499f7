"""Migration 0012 on a database holding keys, campaigns and audit events made before it."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit import service as audit
from app.audit.service import verify_chain
from app.auth.principal import Channel, Principal
from app.db import migrate
from app.db.session import create_sessionmaker, unit_of_work
from app.settings import normalise_database_url
from tests.audit.test_export import wavecast

OLD_KEYS = [("CRM", "aaaaaaaaaaaa"), ("CRM", "bbbbbbbbbbbb"), ("on-call laptop", "cccccccccccc")]


async def test_keys_made_before_people_move_to_a_service_person_named_after_them(
    tmp_path: Path, database_url: str, is_postgres: bool
) -> None:
    if is_postgres:
        url = normalise_database_url(database_url).rsplit("/", 1)[0] + "/test_a_migration"
        admin = create_async_engine(
            database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
        )
        async with admin.connect() as conn:
            await conn.execute(text("DROP DATABASE IF EXISTS test_a_migration"))
            await conn.execute(text("CREATE DATABASE test_a_migration"))
        await admin.dispose()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    await asyncio.to_thread(migrate.upgrade, url, "0011")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for name, prefix in OLD_KEYS:
            await conn.execute(
                text(
                    "INSERT INTO api_key (id, name, prefix, key_hash, scopes, created_by, "
                    "created_at) VALUES (:id, :name, :prefix, 'h', '[\"admin\"]', 'cli:root', "
                    "CURRENT_TIMESTAMP)"
                ),
                {
                    "id": uuid.uuid4().hex if not is_postgres else uuid.uuid4(),
                    "name": name,
                    "prefix": prefix,
                },
            )
        for i in range(3):
            # Version 1 events, chained as the code before people chained them.
            from app.audit import chain

            head = (
                await conn.execute(
                    text("SELECT sequence, hash FROM audit_event ORDER BY sequence DESC LIMIT 1")
                )
            ).first()
            sequence, prev = (head[0], head[1]) if head else (0, chain.GENESIS)
            from app.db.types import utcnow

            at = utcnow()
            fields = chain.ChainFields(
                sequence=sequence + 1,
                occurred_at=at,
                actor="key:aaaaaaaaaaaa (CRM)",
                action="old.event",
                subject_type="t",
                subject_id=str(i),
                reason=None,
                before=None,
                after={"i": i},
            )
            await conn.execute(
                text(
                    "INSERT INTO audit_event (occurred_at, actor, action, subject_type, "
                    "subject_id, after, sequence, prev_hash, hash) VALUES (:at, :actor, "
                    "'old.event', 't', :sid, :after, :seq, :prev, :hash)"
                ),
                {
                    "at": at if is_postgres else chain.stamp(at).replace("T", " ").rstrip("Z"),
                    "actor": fields.actor,
                    "sid": str(i),
                    "after": f'{{"i": {i}}}',
                    "seq": sequence + 1,
                    "prev": prev,
                    "hash": chain.digest(fields, prev),
                },
            )
    await asyncio.to_thread(migrate.upgrade, url)
    async with engine.connect() as conn:
        people = (await conn.execute(text("SELECT id, name, kind FROM person ORDER BY name"))).all()
        keys = (await conn.execute(text("SELECT name, person_id FROM api_key"))).all()
    assert [(p[1], p[2]) for p in people] == [("CRM", "service"), ("on-call laptop", "service")]
    by_name = {p[1]: str(p[0]).replace("-", "") for p in people}
    for name, person_id in keys:
        assert str(person_id).replace("-", "") == by_name[name]

    # Old events keep verifying, and new ones naming a person chain on after them.
    sessions = create_sessionmaker(engine)
    async with unit_of_work(sessions) as session:
        audit.record(
            session,
            Principal(
                actor="key:aaaaaaaaaaaa (CRM)",
                person_id=uuid.UUID(by_name["CRM"]),
                person_name="CRM",
                channel=Channel.api,
            ),
            "new.event",
            subject_type="t",
        )
    verdict = await verify_chain(sessions)
    assert verdict.broken is None, verdict.problem
    assert verdict.checked == 4
    async with engine.connect() as conn:
        versions = (
            (await conn.execute(text("SELECT hash_version FROM audit_event ORDER BY sequence")))
            .scalars()
            .all()
        )
    assert list(versions) == [1, 1, 1, 2]
    await engine.dispose()

    # The commands a regulator's auditor runs agree on the mixed chain.
    assert (await asyncio.to_thread(wavecast, url, "verify")).returncode == 0
    exported = tmp_path / "mixed.ndjson"
    made = await asyncio.to_thread(wavecast, url, "export", "--output", str(exported))
    assert made.returncode == 0, made.stderr
    checked = await asyncio.to_thread(wavecast, url, "verify-export", str(exported))
    assert checked.returncode == 0, checked.stderr
    assert b"4 events" in checked.stdout
