"""Who acted: every event names the person, the key and the channel, under a hash that
covers them (version 2); events written before (version 1) keep verifying beside them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from app.audit import chain
from app.audit.export import Plan, event_line, head_line
from app.audit.export_check import verify_export
from app.audit.service import verify_chain
from app.auth.models import Scope
from app.runtime import Runtime
from tests.conftest import KeyMaker, PersonMaker, bearer

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def mixed(n_old: int, n_new: int) -> list[chain.StoredEvent]:
    events, prev = [], chain.GENESIS
    for i in range(n_old + n_new):
        new = i >= n_old
        fields = chain.ChainFields(
            sequence=i + 1,
            occurred_at=T0 + timedelta(seconds=i),
            actor="key:abcdefabcdef (crm)",
            action="campaign.paused",
            subject_type="campaign",
            subject_id=str(i),
            reason=None,
            before=None,
            after={"i": i},
            person_id="7a4f0c1e-1111-4a4a-9c9c-000000000001" if new else None,
            person_name="Anna" if new else None,
            key_id="7a4f0c1e-1111-4a4a-9c9c-000000000002" if new else None,
            channel="api" if new else None,
            version=2 if new else 1,
        )
        digest = chain.digest(fields, prev)
        events.append(chain.StoredEvent(id=i + 1, fields=fields, prev_hash=prev, hash=digest))
        prev = digest
    return events


def test_a_mixed_chain_verifies_and_its_export_too() -> None:
    events = mixed(3, 3)
    assert chain.verify(events).broken is None
    lines = [event_line(e) for e in events]
    lines.append(
        head_line(
            Plan(chain.Head(6, events[-1].hash), None, None, first_sequence=1, last_sequence=6)
        )
    )
    verdict = verify_export(lines)
    assert verdict.failure is None and verdict.checked == 6


def test_who_is_covered_by_a_version_2_hash() -> None:
    events = mixed(2, 2)
    forged = dataclasses.replace(events[3].fields, person_name="Someone else")
    events[3] = dataclasses.replace(events[3], fields=forged)
    verdict = chain.verify(events)
    assert verdict.broken is not None and verdict.broken.sequence == 4
    assert "edited" in verdict.broken.problem


def test_a_person_added_to_a_version_1_event_is_a_break() -> None:
    events = mixed(2, 1)
    forged = dataclasses.replace(events[1].fields, person_name="Anna")
    events[1] = dataclasses.replace(events[1], fields=forged)
    verdict = chain.verify(events)
    assert verdict.broken is not None and verdict.broken.sequence == 2
    assert "version 1" in verdict.broken.problem


async def test_api_events_name_the_person_key_and_channel(
    client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker, db: Runtime
) -> None:
    anna = await make_person("Anna")
    admin = bearer(await make_key(Scope.admin, person=anna))
    created = await client.post("/v1/people", json={"name": "Bob", "kind": "human"}, headers=admin)
    assert created.status_code == 201
    [event] = (
        await client.get("/v1/audit", params={"action": "person.created"}, headers=admin)
    ).json()["items"][:1]
    assert (event["person_id"], event["person_name"], event["channel"]) == (
        str(anna),
        "Anna",
        "api",
    )
    assert event["key_id"] is not None and event["hash_version"] == 2
    verdict = await verify_chain(db.sessionmaker)
    assert verdict.broken is None
    # Rewriting who did it is caught (the row is changed as only a superuser could).
    async with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(
            text("UPDATE audit_event SET person_name = 'Mallory' WHERE action = 'person.created'")
        )
    verdict = await verify_chain(db.sessionmaker)
    assert verdict.broken is not None and "edited" in verdict.broken.problem
