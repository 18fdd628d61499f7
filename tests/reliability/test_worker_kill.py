"""Workers killed (SIGKILL) and stopped (SIGTERM) at random moments while they send waves.

Real `wavecast worker` processes, the sandbox provider, the suite's PostgreSQL and Redis.
Figures are printed (run with -s) and reported in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
import uuid

import httpx
import pytest

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.db.types import utcnow
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.reliability.support import (
    KillSnapshot,
    WorkerPool,
    ledger_figures,
    percentile,
    resends_after,
    snapshot,
    still_on_lease,
    worker_pool,
)
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    wait_for,
    workers_alive,
)
from workers.jobs import SEND_MAX_TRIES

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

LEASE_SECONDS = 5
DEVICES = 3000
RATE = 250
TRIALS = 20
SIGTERM_TRIALS = 6
# Rows a survivor holds are recorded well within this; rows still on their lease after it
# belonged to the dead worker and wait for the reconciler.
SURVIVOR_GRACE = 1.5


def wave_body(name: str) -> dict[str, object]:
    return campaign_body(
        name=name,
        rollout={
            "waves": [
                {"percent": 10, "hold_seconds": 0},
                {"percent": 40, "hold_seconds": 0},
                {"percent": 100},
            ]
        },
        throttle={"per_second": RATE},
    )


async def _watch_recovery(db: Runtime, snap: KillSnapshot) -> None:
    """Time until every row the dead worker held has left its lease (reclaimed and sent)."""
    await asyncio.sleep(SURVIVOR_GRACE)
    snap.victim_rows = await still_on_lease(db, snap.sending)
    if not snap.victim_rows:
        return
    leases = {i: snap.sending[i] for i in snap.victim_rows}
    await wait_for(lambda: _none_left(db, leases), within=120, interval=0.1)
    snap.recovered_after = time.time() - snap.at


async def _none_left(db: Runtime, leases: dict[int, uuid.UUID]) -> bool:
    return not await still_on_lease(db, leases)


async def _interrupt_trials(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    db: Runtime,
    pool: WorkerPool,
    interrupt: str,
    trials: int,
) -> tuple[list[uuid.UUID], list[tuple[uuid.UUID, KillSnapshot]], list[float]]:
    """Interrupt the longest-running worker at random moments, starting a replacement each
    time, over as many campaigns as it takes; returns the campaigns and each trial's snapshot."""
    rng = random.Random()
    campaigns = [await create_and_start(client, headers, wave_body("kill trials 1"))]
    snaps: list[tuple[uuid.UUID, KillSnapshot]] = []
    watchers = []
    stop_times: list[float] = []
    while len(snaps) < trials:
        campaign_id = campaigns[-1]
        if await campaign_status(db, campaign_id) is CampaignStatus.completed:
            campaigns.append(
                await create_and_start(client, headers, wave_body(f"kill trials {len(campaigns)}"))
            )
            continue
        await asyncio.sleep(rng.uniform(0.8, 2.5))
        # Only a worker that is up is interrupted, and only while another one is up too.
        ready = await wait_for(lambda: _two_ready(db, pool), within=120)
        victim = ready[0]
        began = time.monotonic()
        if interrupt == "kill":
            pool.kill(victim)
        else:
            code = await asyncio.to_thread(pool.terminate, victim)
            assert code == 0, f"worker exited {code} on SIGTERM\n{pool.logs()}"
        stop_times.append(time.monotonic() - began)
        sending, sent = await snapshot(db, campaign_id)
        snap = KillSnapshot(at=time.time(), at_dt=utcnow(), sending=sending, sent=sent)
        snaps.append((campaign_id, snap))
        pool.spawn()
        watchers.append(asyncio.create_task(_watch_recovery(db, snap)))
    for campaign_id in campaigns:
        await wait_for(
            lambda c=campaign_id: _completed(db, c),  # type: ignore[misc]
            within=180,
        )
    await asyncio.gather(*watchers)
    return campaigns, snaps, stop_times


async def _two_ready(db: Runtime, pool: WorkerPool) -> list[subprocess.Popen[bytes]] | None:
    ready = await pool.ready(db.redis)
    return ready if len(ready) >= 2 else None


async def _completed(db: Runtime, campaign_id: uuid.UUID) -> bool:
    return await campaign_status(db, campaign_id) is CampaignStatus.completed


async def _check_figures(
    db: Runtime,
    campaigns: list[uuid.UUID],
    snaps: list[tuple[uuid.UUID, KillSnapshot]],
    label: str,
) -> dict[str, float]:
    lost = duplicates = resends = 0
    max_in_flight = max_trial_duplicates = 0
    for campaign_id in campaigns:
        figures = await ledger_figures(db, campaign_id)
        assert figures.rows == DEVICES
        assert dict(figures.statuses) == {"sent": DEVICES}
        lost += figures.lost
        duplicates += figures.duplicates
        trial_snaps = [s for c, s in snaps if c == campaign_id]
        on_the_wire = set().union(*(s.victim_rows for s in trial_snaps))
        # A row can be sent twice only if a worker died holding it.
        assert figures.duplicated_rows <= on_the_wire, figures.duplicated_rows - on_the_wire
        for s in trial_snaps:
            resends += await resends_after(db, campaign_id, s)
            max_in_flight = max(max_in_flight, len(s.victim_rows))
            max_trial_duplicates = max(
                max_trial_duplicates, sum(figures.sends[d] - 1 for d in s.victim_rows)
            )
        assert figures.duplicates <= sum(len(s.victim_rows) for s in trial_snaps)
    assert lost == 0
    assert resends == 0, f"{resends} rows already sent were sent again"
    recoveries = [s.recovered_after for _c, s in snaps if s.recovered_after is not None]
    result = {
        "trials": len(snaps),
        "campaigns": len(campaigns),
        "lost": lost,
        "resends_of_sent": resends,
        "duplicates": duplicates,
        "max_in_flight_at_kill": max_in_flight,
        "max_duplicates_in_a_trial": max_trial_duplicates,
        "trials_with_rows_on_the_wire": len(recoveries),
        "recovery_p50_s": round(percentile(recoveries, 50), 1),
        "recovery_max_s": round(max(recoveries, default=float("nan")), 1),
    }
    print(f"\n{label}: " + ", ".join(f"{k}={v}" for k, v in result.items()))
    return result


async def test_sigkill_at_random_moments_loses_nothing(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, DEVICES)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    with worker_pool(db.settings, WAVECAST_LEASE_SECONDS=str(LEASE_SECONDS)) as pool:
        pool.spawn(2)
        await workers_alive(db, 2)
        campaigns, snaps, _ = await _interrupt_trials(client, headers, db, pool, "kill", TRIALS)
    result = await _check_figures(db, campaigns, snaps, "SIGKILL")
    assert result["trials_with_rows_on_the_wire"] > 0, "no kill caught a worker mid-batch"


async def _max_job_tries(db: Runtime, seen: list[int], stop: asyncio.Event) -> None:
    """Sample arq's per-job try counters while the trials run."""
    while not stop.is_set():
        keys = [k async for k in db.redis.scan_iter(match="arq:retry:*")]
        if keys:
            values = [int(v) for v in await db.redis.mget(keys) if v is not None]
            seen.append(max(values, default=0))
        await asyncio.sleep(0.25)


async def test_rolling_sigterm_loses_nothing_and_burns_no_retries(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, DEVICES)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    tries: list[int] = []
    stop = asyncio.Event()
    with worker_pool(db.settings, WAVECAST_LEASE_SECONDS=str(LEASE_SECONDS)) as pool:
        pool.spawn(2)
        await workers_alive(db, 2)
        sampler = asyncio.create_task(_max_job_tries(db, tries, stop))
        campaigns, snaps, stop_times = await _interrupt_trials(
            client, headers, db, pool, "term", SIGTERM_TRIALS
        )
        stop.set()
        await sampler
        logs = pool.logs()
    result = await _check_figures(db, campaigns, snaps, "SIGTERM")
    assert "max retries" not in logs, logs
    max_tries = max(tries, default=0)
    assert max_tries < SEND_MAX_TRIES, f"a send job reached {max_tries} tries"
    print(
        f"SIGTERM: max arq tries of a job {max_tries} (limit {SEND_MAX_TRIES}); "
        f"worker exit after SIGTERM p50 {percentile(stop_times, 50):.1f}s, "
        f"max {max(stop_times):.1f}s; {result['trials']} restarts"
    )
