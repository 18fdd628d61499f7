"""Ledger retention (app.delivery.retention): a campaign that ended more than the retention ago
loses its ledger rows and engagement events and keeps, in its view, its engagement figures,
the campaign page and the audit log, every figure it showed; campaigns that may still send
are never touched. On both backends (one ledger table: the rows go by DELETE in batches)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from app.audit import repository as audit_repo
from app.audit import service as audit_service
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import retention
from app.delivery.models import Delivery, DeliveryStatus, LedgerWaveSummary
from app.events.models import EngagementEvent
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, deliveries, run_engine

DAYS = 30
WAVE_FIELDS = (
    "index",
    "targeted",
    "queued",
    "sending",
    "retrying",
    "sent",
    "failed",
    "invalid",
    "cancelled",
    "blocked",
    "expired",
    "capped",
    "received",
    "opened",
    "converted",
    "open_rate",
    "status",
    "audience_size",
    "target_count",
)


async def _headers(make_key: KeyMaker) -> dict[str, str]:
    return bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )


async def _ended(db: Runtime, campaign_id: uuid.UUID, days_ago: float) -> None:
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)  # type: ignore[arg-type]
            .values(finished_at=utcnow() - timedelta(days=days_ago))
        )


async def _finished(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    *,
    days_ago: float,
    name: str = "November statement",
) -> uuid.UUID:
    """A two-wave campaign run to completion, with engagement reported for some pushes."""
    headers = await _headers(make_key)
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(
            name=name,
            rollout={"waves": [{"percent": 40, "hold_seconds": 0}, {"percent": 100}]},
        ),
    )
    await run_engine(db, campaign_id)
    rows = sorted(await deliveries(db, campaign_id), key=lambda r: r.id or 0)
    sent_at = rows[0].sent_at or utcnow()
    events = [
        {"ref": r.id, "type": kind, "at": (sent_at + timedelta(seconds=i + 1)).isoformat()}
        for i, r in enumerate(rows)
        for kind in (("received", "opened") if i % 2 else ("received",))
    ] + [
        {
            "ref": rows[-1].id,
            "type": "converted",
            "at": (sent_at + timedelta(seconds=90)).isoformat(),
        }
    ]
    writer = bearer(await make_key(Scope.events_write))
    answer = await client.post("/v1/events", json=events, headers=writer)
    assert answer.status_code == 200 and answer.json()["rejected"] == [], answer.text
    await _ended(db, campaign_id, days_ago)
    return campaign_id


async def _counts(db: Runtime, campaign_id: uuid.UUID) -> tuple[int, int, int]:
    async with db.sessionmaker() as session:

        async def count(model: Any) -> int:
            query = select(func.count()).select_from(model).where(model.campaign_id == campaign_id)
            return int((await session.execute(query)).scalar_one())

        return (
            await count(Delivery),
            await count(EngagementEvent),
            await count(LedgerWaveSummary),
        )


async def _audit(db: Runtime, campaign_id: uuid.UUID) -> list[tuple[int | None, str]]:
    async with db.sessionmaker() as session:
        events = await audit_repo.list_events(
            session, limit=1000, subject_type="campaign", subject_id=str(campaign_id)
        )
    return [(e.id, e.action) for e in reversed(events)]


def _waves(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: w[k] for k in WAVE_FIELDS} for w in view["waves"]]


async def test_a_pruned_campaign_keeps_its_figures_and_its_audit_trail(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 25)
    headers = await _headers(make_key)
    old = await _finished(client, make_key, db, days_ago=DAYS + 1)
    recent = await _finished(client, make_key, db, days_ago=DAYS - 1, name="December")
    view_before = (await client.get(f"/v1/campaigns/{old}", headers=headers)).json()
    engagement_before = (
        await client.get(f"/v1/campaigns/{old}/engagement", headers=headers)
    ).json()
    trail_before = await _audit(db, old)
    recent_before = await _counts(db, recent)
    assert sum(w["sent"] for w in view_before["waves"]) == 25
    assert sum(w["opened"] for w in view_before["waves"]) == 12
    rows, events, _ = await _counts(db, old)
    refs = [r.id for r in await deliveries(db, old)]

    pruned = await retention.prune(
        db.sessionmaker, SYSTEM, retention_days=DAYS, now=utcnow(), batch=4
    )

    assert [(p.campaign_id, p.rows, p.events) for p in pruned] == [(old, rows, events)]
    assert (rows, events) == (25, 25 + 12 + 1)
    assert await _counts(db, old) == (0, 0, 2)
    assert await _counts(db, recent) == recent_before
    view_after = (await client.get(f"/v1/campaigns/{old}", headers=headers)).json()
    assert _waves(view_after) == _waves(view_before)
    engagement_after = (await client.get(f"/v1/campaigns/{old}/engagement", headers=headers)).json()
    assert engagement_after["waves"] == engagement_before["waves"]
    # The trail is untouched; the prune is one more event on it, and the chain still holds.
    trail_after = await _audit(db, old)
    assert trail_after[: len(trail_before)] == trail_before
    assert [a for _, a in trail_after[len(trail_before) :]] == [retention.AUDIT_ACTION]
    async with db.sessionmaker() as session:
        (event,) = await audit_repo.list_events(
            session, limit=1, action=retention.AUDIT_ACTION, subject_id=str(old)
        )
    assert event.actor == SYSTEM.actor
    assert event.after is not None and event.after["rows"] == 25
    assert sum(w["counts"]["sent"] for w in event.after["waves"].values()) == 25
    verdict = await audit_service.verify_chain(db.sessionmaker)
    assert verdict.broken is None, verdict.problem
    # Reports for the pruned pushes are refused as unknown references, not a server error.
    writer = bearer(await make_key(Scope.events_write))
    late = [{"ref": refs[0], "type": "opened", "at": utcnow().isoformat()}]
    answer = await client.post("/v1/events", json=late, headers=writer)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 0 and len(answer.json()["rejected"]) == 1
    # A second run finds nothing left to do.
    assert await retention.prune(db.sessionmaker, SYSTEM, retention_days=DAYS, now=utcnow()) == []


async def test_campaigns_that_may_still_send_are_never_pruned(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 10)
    headers = await _headers(make_key)
    # Running, paused, recently ended, and ended long ago with a row still on the wire.
    running = await create_and_start(client, headers, campaign_body(name="running"))
    await run_engine(db, running, until={CampaignStatus.running})
    paused = await create_and_start(client, headers, campaign_body(name="paused"))
    await run_engine(db, paused, until={CampaignStatus.running})
    answer = await client.post(f"/v1/campaigns/{paused}/pause", headers=headers)
    assert answer.status_code == 200, answer.text
    recent = await _finished(client, make_key, db, days_ago=DAYS - 0.5, name="recent")
    on_the_wire = await _finished(client, make_key, db, days_ago=DAYS * 3, name="wire")
    async with unit_of_work(db.sessionmaker) as session:
        first = (
            await session.execute(
                select(func.min(Delivery.id)).where(Delivery.campaign_id == on_the_wire)  # type: ignore[arg-type]
            )
        ).scalar_one()
        await session.execute(
            update(Delivery)
            .where(Delivery.id == first)  # type: ignore[arg-type]
            .values(status=DeliveryStatus.sending.value)
        )
        # A campaign still running, whatever its timestamps say.
        for campaign_id in (running, paused):
            await session.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)  # type: ignore[arg-type]
                .values(finished_at=utcnow() - timedelta(days=DAYS * 3))
            )
    before = {c: await _counts(db, c) for c in (running, paused, recent, on_the_wire)}
    assert all(rows > 0 for rows, _, _ in before.values())

    async with db.sessionmaker() as session:
        assert await retention.prunable(session, before=retention.cutoff(utcnow(), DAYS)) == []
    assert await retention.prune(db.sessionmaker, SYSTEM, retention_days=DAYS, now=utcnow()) == []
    assert {c: await _counts(db, c) for c in before} == before
    async with db.sessionmaker() as session:
        actions = await audit_repo.list_events(session, limit=10, action=retention.AUDIT_ACTION)
    assert actions == []


async def test_an_interrupted_prune_is_finished_from_its_first_summary(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 12)
    headers = await _headers(make_key)
    campaign_id = await _finished(client, make_key, db, days_ago=DAYS + 5)
    before = _waves((await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json())
    now = utcnow()
    # Step 1 committed, then the process stopped before the rows went.
    async with unit_of_work(db.sessionmaker) as session:
        assert await retention._summarise(
            session,
            SYSTEM,
            campaign_id,
            before=retention.cutoff(now, DAYS),
            retention_days=DAYS,
            now=now,
        )
    # Some rows gone: the view reads the summary, never the half-deleted ledger.
    async with unit_of_work(db.sessionmaker) as session:
        await retention._delete_batch(session, Delivery.__table__, campaign_id, 5)  # type: ignore[attr-defined]
    mid = _waves((await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json())
    assert mid == before
    async with db.sessionmaker() as session:
        (listed,) = await retention.prunable(session, before=retention.cutoff(now, DAYS))
    assert listed.resumed and listed.rows > 0

    (done,) = await retention.prune(db.sessionmaker, SYSTEM, retention_days=DAYS, now=now)

    assert done.campaign_id == campaign_id
    assert await _counts(db, campaign_id) == (0, 0, 2)
    after = _waves((await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json())
    assert after == before
    async with db.sessionmaker() as session:
        pruned = await audit_repo.list_events(session, limit=10, action=retention.AUDIT_ACTION)
    assert len(pruned) == 1


def test_the_retention_is_at_least_a_day() -> None:
    now = utcnow()
    assert retention.cutoff(now, 1) == now - timedelta(days=1)
    for days in (0, -3):
        with pytest.raises(ValueError, match="at least one day"):
            retention.cutoff(now, days)
