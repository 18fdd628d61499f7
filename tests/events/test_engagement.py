"""Per-wave engagement figures from hand-built timings: counts, open rate, time to open
(nearest rank) and the opens-per-second series, in the campaign view and the engagement
endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.db.types import utcnow
from app.delivery.models import Delivery
from app.events.repository import nearest_rank
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, deliveries, run_engine

# Seconds from send to open of each wave's opened pushes (the rest of a wave never opens).
WAVE_0 = [1, 2, 3, 4, 5]
# -2: opened before its send was recorded (a quick thumb); counted as 0.
WAVE_1 = [-2, 1, 20, 40]


def test_nearest_rank_is_the_smallest_value_covering_the_share() -> None:
    assert nearest_rank([1, 2, 3, 4, 5], 0.5) == 3
    assert nearest_rank([1, 2, 3, 4, 5], 0.9) == 5
    assert nearest_rank([0, 1, 20, 40], 0.5) == 1
    assert nearest_rank([0, 1, 20, 40], 0.9) == 40
    assert nearest_rank([7], 0.9) == 7


async def test_per_wave_figures_and_the_opens_series(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 10)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 50, "hold_seconds": 0}, {"percent": 100}]}),
    )
    await run_engine(db, campaign_id)
    rows = sorted(await deliveries(db, campaign_id), key=lambda r: r.id or 0)
    by_wave = {w: [r for r in rows if r.wave == w] for w in (0, 1)}
    assert [len(by_wave[0]), len(by_wave[1])] == [5, 5]
    sent_at = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    async with db.sessionmaker() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.campaign_id == campaign_id)  # type: ignore[arg-type]
            .values(sent_at=sent_at, created_at=sent_at)
        )
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)  # type: ignore[arg-type]
            .values(created_at=sent_at)
        )
        await session.commit()

    def at(seconds: float) -> str:
        return (sent_at + timedelta(seconds=seconds)).isoformat()

    events = [
        {"ref": r.id, "type": "opened", "at": at(s)}
        for wave, delays in ((0, WAVE_0), (1, WAVE_1))
        for r, s in zip(by_wave[wave], delays, strict=False)
    ]
    events += [{"ref": r.id, "type": "received", "at": at(0.5)} for r in by_wave[0][:3]]
    events += [{"ref": by_wave[1][1].id, "type": "converted", "at": at(60)}]
    writer = bearer(await make_key(Scope.events_write))
    answer = await client.post("/v1/events", json=events, headers=writer)
    assert answer.json() == {"accepted": 13, "duplicates": 0, "rejected": []}

    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json()
    figures = [
        {k: w[k] for k in ("sent", "received", "opened", "converted", "open_rate")}
        for w in view["waves"]
    ]
    assert figures == [
        {"sent": 5, "received": 3, "opened": 5, "converted": 0, "open_rate": 1.0},
        {"sent": 5, "received": 0, "opened": 4, "converted": 1, "open_rate": 0.8},
    ]

    reader = bearer(await make_key(Scope.campaigns_read))
    engagement = (
        await client.get(f"/v1/campaigns/{campaign_id}/engagement", headers=reader)
    ).json()
    waves = engagement["waves"]
    assert [(w["time_to_open_p50"], w["time_to_open_p90"]) for w in waves] == [
        (3.0, 5.0),
        (1.0, 40.0),
    ]
    assert [w["open_rate"] for w in waves] == [1.0, 0.8]

    def second(offset: int) -> str:
        return (sent_at + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z")

    def points(body: dict[str, object]) -> list[tuple[str, int]]:
        return [
            (p["second"].replace("+00:00", "Z"), p["opens"])  # type: ignore[index]
            for p in body["opens_per_second"]  # type: ignore[attr-defined]
        ]

    assert points(engagement) == [
        (second(-2), 1),
        (second(1), 2),
        (second(2), 1),
        (second(3), 1),
        (second(4), 1),
        (second(5), 1),
        (second(20), 1),
        (second(40), 1),
    ]
    since = (sent_at + timedelta(seconds=3)).isoformat()
    later = (
        await client.get(
            f"/v1/campaigns/{campaign_id}/engagement", params={"since": since}, headers=reader
        )
    ).json()
    assert points(later) == [(second(s), 1) for s in (3, 4, 5, 20, 40)]
    assert datetime.fromisoformat(later["since"]) == sent_at + timedelta(seconds=3)


async def test_engagement_of_an_unknown_campaign_is_404_and_naive_since_is_422(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    reader = bearer(await make_key(Scope.campaigns_read))
    missing = await client.get(
        "/v1/campaigns/00000000-0000-0000-0000-000000000000/engagement", headers=reader
    )
    assert missing.status_code == 404
    naive = datetime.now(UTC).replace(tzinfo=None).isoformat()
    refused = await client.get(
        "/v1/campaigns/00000000-0000-0000-0000-000000000000/engagement",
        params={"since": naive},
        headers=reader,
    )
    assert refused.status_code == 422
