"""Wave membership end to end, with an audience that changes between waves.

The engine releases waves and the sandbox provider sends them, in this process, against the
real database and Redis. Between two waves devices leave the audience (their token turns out
to be dead, they unregister, their consent tag is removed) and others join it (the tag is
added, new devices register). After each release the ledger must be what the planner's
reference (`reference_release`) says for the audience as it was at that release, and the last
wave at 100 % must reach every device then in the audience.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from sqlmodel import col

from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery.models import SandboxMessage
from app.delivery.sender import SenderDeps, pump
from app.devices import service as devices_service
from app.devices.models import Device, DeviceStatus, Platform
from app.devices.schemas import DevicePatch, DeviceRegistration
from app.rollout import engine
from app.rollout.bucketing import campaign_rotation
from app.rollout.planner import reference_release
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer, truncate_all
from tests.support import (
    campaign_body,
    campaign_status,
    create_and_start,
    deliveries,
    run_engine,
    sender_deps,
)

CONSENT = "consent"
RULES = {"field": "tags", "op": "contains", "value": CONSENT}


async def register(
    runtime: Runtime, count: int, *, consent: bool = True, stale: bool = False
) -> list[uuid.UUID]:
    """Devices through the registration service; a stale token is one the sandbox answers
    as unregistered, so sending to it deactivates the device."""
    prefix = "sandbox-invalid" if stale else "android"
    rows = [
        devices_service.registration_row(
            DeviceRegistration(
                token=f"{prefix}-{uuid.uuid4().hex}",
                platform=Platform.android,
                tags=[CONSENT] if consent else ["news"],
            )
        )
        for _ in range(count)
    ]
    async with unit_of_work(runtime.sessionmaker) as session:
        await devices_service.register_many(session, rows)
    return [r["id"] for r in rows]


async def set_consent(runtime: Runtime, device_ids: list[uuid.UUID], *, given: bool) -> None:
    """Edit the devices' tags the way the device API does."""
    async with unit_of_work(runtime.sessionmaker) as session:
        for device_id in device_ids:
            tags = [CONSENT] if given else ["news"]
            await devices_service.update(session, device_id, DevicePatch(tags=tags))


async def unregister(runtime: Runtime, device_ids: list[uuid.UUID]) -> None:
    async with unit_of_work(runtime.sessionmaker) as session:
        for device_id in device_ids:
            await devices_service.unregister(session, device_id)


async def audience_now(runtime: Runtime) -> set[uuid.UUID]:
    """The campaign's audience as these tests define it, read back in Python (not through
    the rule compiler): active devices carrying the consent tag."""
    async with runtime.sessionmaker() as session:
        rows = (
            await session.execute(select(Device.id, Device.status, Device.tags))  # type: ignore[call-overload]
        ).all()
    return {
        device_id
        for device_id, status, tags in rows
        if status == DeviceStatus.active.value and isinstance(tags, list) and CONSENT in tags
    }


async def ledger_now(runtime: Runtime, campaign_id: uuid.UUID) -> dict[uuid.UUID, int]:
    return {r.device_id: r.wave for r in await deliveries(runtime, campaign_id)}


async def messages_per_device(runtime: Runtime, campaign_id: uuid.UUID) -> Counter[uuid.UUID]:
    async with runtime.sessionmaker() as session:
        rows = (
            await session.execute(
                select(SandboxMessage.device_id, func.count())  # type: ignore[call-overload]
                .where(SandboxMessage.campaign_id == campaign_id)
                .group_by(SandboxMessage.device_id)
            )
        ).all()
    return Counter({device_id: int(n) for device_id, n in rows})


# Every wave but the last holds this long, so the next one waits while a test changes the
# audience; the driver releases it by ticking with a clock past the hold.
HOLD = timedelta(hours=1)


@dataclass
class Drive:
    """Moves a campaign wave by wave, so a test can change the audience in between."""

    runtime: Runtime
    deps: SenderDeps
    campaign_id: uuid.UUID

    async def tick(self, now: datetime) -> list[int]:
        report = await engine.tick(
            self.runtime.sessionmaker, self.deps.control, self.deps.settings, now
        )
        return [n for c, _, n in report.released if c == self.campaign_id]

    async def release(self) -> CampaignStatus:
        """Finish the wave that was sent, release the next one and tick until it holds all
        its devices (its first chunk, then its size counted and the rest added); the rows
        are left unsent."""
        if not await self.tick(utcnow()):
            # The sent wave finished and its hold keeps the next one back.
            status = await campaign_status(self.runtime, self.campaign_id)
            if status is not CampaignStatus.running:
                return status
            assert await self.tick(utcnow() + 2 * HOLD), "nothing was released"
        for _ in range(1000):
            if not await self.tick(utcnow()):
                return await campaign_status(self.runtime, self.campaign_id)
        raise AssertionError("the wave never finished releasing")

    async def send(self) -> None:
        for _ in range(100):
            report = await pump(self.deps, self.campaign_id, budget_seconds=10)
            if report.stopped_because != "budget":
                return
        raise AssertionError("the wave never drained")


async def drive(
    runtime: Runtime, client: httpx.AsyncClient, make_key: KeyMaker, percents: list[int]
) -> Drive:
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    hold = int(HOLD.total_seconds())
    body = campaign_body(
        audience={"rules": RULES},
        rollout={"waves": [{"percent": p, "hold_seconds": hold} for p in percents]},
    )
    campaign_id = await create_and_start(client, headers, body)
    return Drive(runtime, await sender_deps(runtime), campaign_id)


async def test_stale_tokens_found_by_early_waves_never_shorten_the_last_one(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    """10 % of the tokens are dead; each wave finds some of them and the devices leave the
    audience. The last wave still reaches every device whose token works."""
    good = await register(db, 900)
    stale = await register(db, 100, stale=True)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    body = campaign_body(
        audience={"rules": RULES},
        rollout={"waves": [{"percent": 10}, {"percent": 40}, {"percent": 100}]},
    )
    campaign_id = await create_and_start(client, headers, body)
    await run_engine(db, campaign_id)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed
    rows = await deliveries(db, campaign_id)
    status = {r.device_id: r.status for r in rows}
    never_sent = [d for d in good if status.get(d) != "sent"]
    assert never_sent == [], f"{len(never_sent)} working devices were never sent"
    assert {status[d] for d in stale} == {"invalid_token"}
    assert max(Counter(r.device_id for r in rows).values()) == 1
    assert max((await messages_per_device(db, campaign_id)).values()) == 1


async def test_an_edited_audience_between_waves_is_reached_in_full_by_the_last_wave(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    members = await register(db, 600)
    outsiders = await register(db, 200, consent=False)
    run = await drive(db, client, make_key, [20, 50, 100])
    rotation = campaign_rotation(run.campaign_id)
    expected: dict[uuid.UUID, int] = {}
    percents = [Decimal(20), Decimal(50), Decimal(100)]
    for wave, percent in enumerate(percents):
        audience = await audience_now(db)
        expected = reference_release(
            audience, expected, rotation=rotation, wave=wave, percent=percent
        )
        await run.release()
        assert await ledger_now(db, run.campaign_id) == expected, f"wave {wave}"
        await run.send()
        if wave == 0:
            # Half of the first wave withdraws its consent, a quarter of it unregisters,
            # and half of the outsiders give theirs: the audience moves under the campaign.
            first = [d for d, w in expected.items() if w == 0]
            await set_consent(db, first[: len(first) // 2], given=False)
            await unregister(db, first[len(first) // 2 : len(first) * 3 // 4])
            await set_consent(db, outsiders[:100], given=True)
        if wave == 1:
            # Devices not yet reached leave, new ones join.
            untouched = [d for d in members if d not in expected]
            await set_consent(db, untouched[:40], given=False)
            await register(db, 70)
    last_audience = audience
    assert await run.release() is CampaignStatus.completed
    ledger = await ledger_now(db, run.campaign_id)
    assert last_audience <= set(ledger)
    sent = {r.device_id for r in await deliveries(db, run.campaign_id) if r.status == "sent"}
    assert last_audience <= sent
    assert max((await messages_per_device(db, run.campaign_id)).values()) == 1


# One example: devices, waves, and what happens to the audience after each wave.
@dataclass(frozen=True)
class Scenario:
    members: int
    outsiders: int
    stale: int
    percents: list[int]
    chunk: int
    # Per gap between two waves: fractions of devices to untag, unregister, tag, and new ones.
    changes: list[tuple[float, float, float, int]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    percents = sorted(draw(st.lists(st.integers(1, 99), min_size=1, max_size=3, unique=True)))
    percents.append(100)
    fraction = st.sampled_from([0.0, 0.1, 0.3, 0.6])
    changes = [
        (draw(fraction), draw(fraction), draw(fraction), draw(st.integers(0, 15)))
        for _ in percents[:-1]
    ]
    return Scenario(
        members=draw(st.integers(0, 60)),
        outsiders=draw(st.integers(0, 20)),
        stale=draw(st.integers(0, 10)),
        percents=percents,
        chunk=draw(st.sampled_from([3, 7, 5_000])),
        changes=changes,
    )


def _pick(ids: list[uuid.UUID], fraction: float) -> list[uuid.UUID]:
    return ids[: int(len(ids) * fraction)]


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(scenario=scenarios())
async def test_every_release_follows_the_reference_as_the_audience_changes(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    scenario: Scenario,
) -> None:
    await truncate_all(db)
    await db.redis.flushdb()
    # Small release chunks make the rest of a wave follow over several ticks.
    monkeypatch.setattr(engine, "RELEASE_CHUNK_ROWS", scenario.chunk)
    monkeypatch.setattr(engine, "RELEASE_MORE_ROWS", scenario.chunk)
    await register(db, scenario.members)
    await register(db, scenario.stale, stale=True)
    await register(db, scenario.outsiders, consent=False)
    run = await drive(db, client, make_key, scenario.percents)
    rotation = campaign_rotation(run.campaign_id)
    expected: dict[uuid.UUID, int] = {}
    audience: set[uuid.UUID] = set()
    for wave, percent in enumerate(scenario.percents):
        audience = await audience_now(db)
        expected = reference_release(
            audience, expected, rotation=rotation, wave=wave, percent=Decimal(percent)
        )
        await run.release()
        assert await ledger_now(db, run.campaign_id) == expected, f"wave {wave}"
        await run.send()
        if wave < len(scenario.changes):
            untag, leave, tag, new = scenario.changes[wave]
            inside = sorted(await audience_now(db))
            outside = sorted(
                d for d in await _all_devices(db) if d not in inside and d not in expected
            )
            await set_consent(db, _pick(inside, untag), given=False)
            await unregister(db, _pick(inside[::-1], leave))
            await set_consent(db, _pick(outside, tag), given=True)
            await register(db, new)
    assert await run.release() is CampaignStatus.completed
    ledger = await ledger_now(db, run.campaign_id)
    assert audience <= set(ledger), "the 100 % wave missed devices of its audience"
    messages = await messages_per_device(db, run.campaign_id)
    assert max(messages.values(), default=0) <= 1


async def _all_devices(runtime: Runtime) -> list[uuid.UUID]:
    async with runtime.sessionmaker() as session:
        return list((await session.execute(select(Device.id))).scalars())  # type: ignore[call-overload]


async def test_a_device_invalidated_between_waves_frees_its_place(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    """The arithmetic on a small case: 100 devices, waves 10 % and 30 %. Four of the first
    ten become invalid; at the second release the audience is 96 and 30 % of it is 29, of
    which the ledger still covers 6: the wave adds 23 (not 19)."""
    await register(db, 100)
    run = await drive(db, client, make_key, [10, 30, 100])
    await run.release()
    first = list(await ledger_now(db, run.campaign_id))
    assert len(first) == 10
    await run.send()
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(Device)
            .where(col(Device.id).in_(first[:4]))
            .values(status=DeviceStatus.invalid.value)
        )
    await run.release()
    ledger = await ledger_now(db, run.campaign_id)
    assert Counter(ledger.values()) == {0: 10, 1: 23}
    audience = await audience_now(db)
    assert sum(1 for d in audience if d in ledger) == 29
    # The release and the wave's size, as the audit log has them.
    released = await audit_after(db, "campaign.wave_released")
    sized = await audit_after(db, "campaign.wave_sized")
    assert (released[1]["audience_size"], released[1]["target"]) == (96, 29)
    assert sized[1] == {"wave": 1, "target": 29, "held": 6, "members": 23}
    # The first chunk was cut from the whole ledger (29 - 10), the next tick added the rest.
    assert released[1]["added"] == 19


async def audit_after(runtime: Runtime, action: str) -> list[dict[str, object]]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            select(AuditEvent.after)  # type: ignore[call-overload]
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.id)
        )
        return list(rows.scalars().all())
