"""Stops and outages under a slow provider, with real worker processes.

Two `wavecast worker` processes send through the real client libraries (firebase-admin,
aioapns) to the project's protocol fakes, each fake in a process of its own (as the kill
benchmark runs them: in a thread of this process it would share the interpreter lock with
the test and stamp requests late). The suite's PostgreSQL and Redis, or a redis-server of
the test's own where Redis dies. The evidence is the fake's records: each request is stamped
with `time.monotonic()` when its headers arrived, a clock shared by every process on the
machine, so it compares with the instant this test saw an answer.

FCM is served over HTTP/2 with TLS, as Google serves it. Its client carries at most 100
requests at a time on a lane (one HTTP/2 connection, 100 streams), so a batch of a few hundred
messages at seconds a request keeps starting requests for several rounds: what a stop must
cut short, and what a provider timeout must outlast.

What is proved (SPEC §3 "Kill switch", §5 "Kill switch"):
- once a campaign kill or the global kill switch answers 200, no provider request of the
  stopped campaigns starts, however slow the provider, and the requests already on the wire
  end within 250 ms of the answer (a 503 "not yet confirmed" is asked again, as an operator
  would);
- a slow provider alone never makes a device receive a campaign twice: a batch still on
  the wire when its send job's budget runs out runs to its record, and is not sent again;
- a worker that cannot reach Redis stops starting requests within FENCE_SECONDS of its last
  confirmation, and sends again by itself once Redis is back, nothing lost or sent twice.

Figures are printed (run with -s).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from sqlalchemy import select
from wavecast_tools.bench import stack
from wavecast_tools.bench.timing import KillTrial, Request, kill_trial

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.control.fence import FENCE_SECONDS
from app.delivery.models import Delivery
from app.devices.models import Device
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.reliability.support import PrivateRedis, WorkerPool, worker_pool
from tests.support import campaign_body, campaign_status, create_and_start, wait_for, workers_alive

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

WORKERS = 2
# The kill target (SPEC §5): from the answer to the end of the last request started before it.
TARGET_LAG_SECONDS = 0.250
# How long after the answer the fake's records are read: anything the stop failed to stop
# would have started by then.
SETTLE_SECONDS = 2.0
# A stop answered 503 "not yet confirmed" is asked again for this long at most.
CONFIRM_WITHIN_SECONDS = 30.0
# The fake stamps a request when its event loop reads the headers, and the workers share
# two cores with it and with this test: a request written in time can be stamped this much
# later. Only the Redis-loss bound uses it; a stop's answer needs none (the permits it
# waits for are released only after the requests under them have ended).
SCHEDULING_SLACK_SECONDS = 0.25

SLOW = 3.0  # seconds the fake takes to answer each push in the stop tests
STOP_RATE = 10_000  # 388-message batches (4 % of the paced rate)
# A lane of the FCM client carries 100 requests at a time (the HTTP/2 streams httpcore
# allows on its one connection), so a 388-message batch takes four rounds, ~12 s at 3 s a
# request: the provider timeout must outlast that (the test default, 3 s, would time every
# request out), and the lease outlasts the timeout by the 2 s the settings require.
SLOW_ENV = {"WAVECAST_PROVIDER_TIMEOUT_SECONDS": "20", "WAVECAST_LEASE_SECONDS": "22"}
# Four send jobs of one batch each deliver ~130 a second through FCM and ~520 through APNs
# at 3 s a request: this many devices cannot be done before the stop.
STOP_DEVICES = 40_000
SLOW_LEASE_SECONDS = float(SLOW_ENV["WAVECAST_LEASE_SECONDS"])


@pytest.fixture(scope="module")
def fcm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Fake]:
    # HTTP/2 over TLS, as Google serves it; light records: who, when and which answer.
    root = tmp_path_factory.mktemp("slow-fcm")
    with stack.fake("fcm", root, recording="light", tls=True) as fake:
        yield fake


def fresh(fake: stack.Fake, latency: float) -> int:
    """The fake answering every push after `latency`; returns the sequence to read after."""
    fake.clear_rules()
    fake.forget_records()
    fake.add_rule(latency=latency)
    return fake.last_seq()


async def sends(fake: stack.Fake, since: int) -> list[tuple[str, Request]]:
    """Pushes the fake received after `since`: (device token, request), by arrival."""
    records = await asyncio.to_thread(fake.records, since)
    out = [(str(r["token"]), stack.request_of(r)) for r in records]
    return sorted(out, key=lambda pair: pair[1].start)


async def first_send(fake: stack.Fake, since: int) -> None:
    async def arrived() -> bool:
        return bool(await asyncio.to_thread(fake.records, since))

    await wait_for(arrived, within=60, interval=0.02)


@dataclass(frozen=True)
class Stop:
    answered: float  # time.monotonic() right after the 200
    call: float  # seconds from the first request to the 200
    unconfirmed: int  # 503 answers before it
    in_flight: int  # what the 200 said was still in flight (0: it waited for all of it)


async def confirmed_stop(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> Stop:
    """Ask until the stop answers 200, as an operator told "not yet confirmed" would."""
    asked = time.monotonic()
    unconfirmed = 0
    while True:
        answer = await client.post(path, json={"reason": "slow provider drill"}, headers=headers)
        if answer.status_code == 200:
            answered = time.monotonic()
            in_flight = int(answer.json()["in_flight_at_answer"])
            return Stop(answered, answered - asked, unconfirmed, in_flight)
        assert answer.status_code == 503, answer.text
        assert answer.json()["title"] == "Stop recorded, not yet confirmed", answer.text
        assert time.monotonic() - asked < CONFIRM_WITHIN_SECONDS, (
            f"{path} still unconfirmed after {unconfirmed + 1} answers"
        )
        unconfirmed += 1


async def ledger(runtime: Runtime, campaign_id: uuid.UUID) -> dict[str, tuple[str, int]]:
    """Device token -> (delivery status, attempts), for every row of the campaign."""
    async with runtime.sessionmaker() as session:
        rows = (
            await session.execute(
                select(Device.token, Delivery.status, Delivery.attempts)  # type: ignore[call-overload]
                .join(Device, Device.id == Delivery.device_id)
                .where(Delivery.campaign_id == campaign_id)
            )
        ).all()
    return {token: (status, attempts) for token, status, attempts in rows}


async def settled_ledger(
    runtime: Runtime, campaign_id: uuid.UUID, *, within: float
) -> dict[str, tuple[str, int]]:
    """The ledger once no row is left `sending` (a row on the wire is recorded when its
    answer comes, a dead worker's row when its lease runs out); fails after `within`."""

    async def settled() -> dict[str, tuple[str, int]] | None:
        rows = await ledger(runtime, campaign_id)
        return None if any(s == "sending" for s, _ in rows.values()) else rows

    try:
        rows: dict[str, tuple[str, int]] = await wait_for(settled, within=within, interval=0.2)
    except AssertionError:
        left = Counter(s for s, _ in (await ledger(runtime, campaign_id)).values())
        raise AssertionError(f"rows still `sending` {within:.0f}s on: {dict(left)}") from None
    return rows


def check_ledger_against_fake(
    rows: dict[str, tuple[str, int]], requests: list[tuple[str, Request]], stopped_as: str
) -> None:
    """The ledger says what the provider saw: a `sent` row had exactly one request, answered
    200; a row the stop kept off the wire (`stopped_as`) had none; nothing else is left."""
    statuses = Counter(s for s, _ in rows.values())
    assert set(statuses) <= {"sent", stopped_as}, f"unexpected statuses: {dict(statuses)}"
    asked = Counter(token for token, _ in requests)
    accepted = {token for token, r in requests if r.status == 200}
    sent = {token for token, (s, _) in rows.items() if s == "sent"}
    assert accepted == sent, (
        f"{len(accepted - sent)} accepted pushes not recorded `sent`, "
        f"{len(sent - accepted)} `sent` rows the provider never accepted"
    )
    assert all(rows[token][1] == 1 for token in sent), "a sent row counted more than one attempt"
    held = {token for token, (s, _) in rows.items() if s == stopped_as}
    assert not held & set(asked), f"{len(held & set(asked))} `{stopped_as}` rows reached the fake"


def duplicates(requests: list[tuple[str, Request]]) -> dict[str, int]:
    return {token: n for token, n in Counter(t for t, _ in requests).items() if n > 1}


async def keys(make_key: KeyMaker) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    killer = bearer(await make_key(Scope.kill, name="on-call"))
    admin = bearer(await make_key(Scope.admin, name="head of ops"))
    return operator, killer, admin


def one_wave(per_second: int, *, tag: str | None = None) -> dict[str, object]:
    """One 100 % wave to every device, or to those tagged `tag`."""
    audience = (
        {"everyone": True} if tag is None else {"field": "tags", "op": "contains", "value": tag}
    )
    return campaign_body(
        name=f"slow provider {tag or 'everyone'}",
        audience={"rules": audience},
        rollout={"waves": [{"percent": 100}]},
        throttle={"per_second": per_second},
    )


def check_stop(what: str, stop: Stop, seen: KillTrial, logs: str) -> None:
    print(
        f"\n{what}: {seen.started_after} requests started after the 200, "
        f"{seen.started_before} before ({seen.in_flight_at_answer} still on the wire at it); "
        f"lag {seen.lag * 1000:.0f} ms; stop call {stop.call * 1000:.0f} ms with "
        f"{stop.unconfirmed} '503 not yet confirmed'"
    )
    assert seen.started_before > 0, "nothing was sent before the stop"
    assert seen.started_after == 0, f"{seen.started_after} requests started after the 200\n{logs}"
    assert seen.lag <= TARGET_LAG_SECONDS, f"last in-flight request ended {seen.lag:.3f}s late"
    assert stop.in_flight == 0, f"the 200 said {stop.in_flight} batches were still in flight"


# --- 1. a campaign kill ------------------------------------------------------------------


async def test_kill_under_a_slow_provider(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fcm: stack.Fake
) -> None:
    since = fresh(fcm, SLOW)
    await stack.add_devices(db, STOP_DEVICES, tag="kill", platform="android")
    operator, killer, _ = await keys(make_key)
    with worker_pool(db.settings, **fcm.env, **SLOW_ENV) as pool:
        pool.spawn(WORKERS)
        await workers_alive(db, WORKERS)
        campaign_id = await create_and_start(client, operator, one_wave(STOP_RATE))
        await first_send(fcm, since)
        # Mid-batch: the first requests of each batch are on the wire, the rest wait for a
        # stream (100 a connection) and would start as the first ones are answered.
        await asyncio.sleep(1.0)
        stop = await confirmed_stop(client, f"/v1/campaigns/{campaign_id}/kill", killer)
        await asyncio.sleep(SETTLE_SECONDS)
        requests = await sends(fcm, since)
        seen = kill_trial([r for _, r in requests], stop.answered)
        rows = await settled_ledger(db, campaign_id, within=SLOW_LEASE_SECONDS)
        logs = pool.logs()
    check_stop("campaign kill, FCM at 3 s", stop, seen, logs)
    statuses = Counter(s for s, _ in rows.values())
    print(f"ledger: {dict(statuses)}")
    assert duplicates(requests) == {}
    assert statuses["cancelled"] > 0, "the campaign finished before its kill"
    check_ledger_against_fake(rows, requests, stopped_as="cancelled")
    assert await campaign_status(db, campaign_id) is CampaignStatus.killed


# --- 2. the global kill switch -------------------------------------------------------------


async def test_kill_switch_under_a_slow_provider(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fcm: stack.Fake, tmp_path: Path
) -> None:
    """Two campaigns, one to Android devices through FCM, one to iOS devices through APNs,
    both at 3 s a request: the switch stops both."""
    await stack.add_devices(db, STOP_DEVICES // 2, tag="fcm", platform="android")
    await stack.add_devices(db, STOP_DEVICES // 2, tag="apns", platform="ios")
    operator, killer, admin = await keys(make_key)
    with stack.fake("apns", tmp_path, recording="light") as apns:
        fakes = {"fcm": (fcm, fresh(fcm, SLOW)), "apns": (apns, fresh(apns, SLOW))}
        with worker_pool(db.settings, **{**fcm.env, **apns.env, **SLOW_ENV}) as pool:
            pool.spawn(WORKERS)
            await workers_alive(db, WORKERS)
            campaigns = {
                tag: await create_and_start(client, operator, one_wave(STOP_RATE, tag=tag))
                for tag in fakes
            }
            for fake, since in fakes.values():
                await first_send(fake, since)
            # Mid-batch for FCM (requests still waiting for a stream); APNs has all of its
            # batches' requests on the wire, its next batches due when they are answered.
            await asyncio.sleep(1.0)
            stop = await confirmed_stop(client, "/v1/kill-switch", killer)
            await asyncio.sleep(SETTLE_SECONDS)
            requests = {tag: await sends(fake, since) for tag, (fake, since) in fakes.items()}
            released = await client.post(
                "/v1/kill-switch/release", json={"reason": "drill over"}, headers=admin
            )
            assert released.status_code == 200, released.text
            rows = {
                tag: await settled_ledger(db, campaign, within=SLOW_LEASE_SECONDS)
                for tag, campaign in campaigns.items()
            }
            # Released, the campaigns stay paused: still nothing leaves.
            await asyncio.sleep(1.0)
            after_release = {tag: await sends(fake, since) for tag, (fake, since) in fakes.items()}
            logs = pool.logs()
    every = [r for tag in fakes for _, r in requests[tag]]
    check_stop("kill switch, FCM and APNs at 3 s", stop, kill_trial(every, stop.answered), logs)
    for tag, campaign in campaigns.items():
        seen = kill_trial([r for _, r in requests[tag]], stop.answered)
        statuses = Counter(s for s, _ in rows[tag].values())
        print(
            f"  {tag}: {seen.started_before} requests before the 200, {seen.started_after} "
            f"after, lag {seen.lag * 1000:.0f} ms; ledger {dict(statuses)}"
        )
        assert seen.started_before > 0, f"nothing was sent through {tag}"
        assert len(after_release[tag]) == len(requests[tag]), "requests after the release"
        assert duplicates(requests[tag]) == {}
        # Paused, not killed: what the switch kept off the wire waits for a resume, queued in
        # the ledger or not yet in it (a wave's rows are added a chunk per tick, so the
        # switch can land while every row added so far is sent).
        assert statuses["sent"] < STOP_DEVICES // 2, (
            f"the {tag} campaign finished before the switch"
        )
        check_ledger_against_fake(rows[tag], requests[tag], stopped_as="queued")
        assert await campaign_status(db, campaign) is CampaignStatus.paused


# --- 3. a slow provider alone ----------------------------------------------------------------


VERY_SLOW = 8.0
SLOW_DEVICES = 3_000
# 485-message batches (4 % of the paced rate), seven in all, four on the wire at once. At
# 8 s a request a batch outlasts its send job's 10 s budget: a batch started late in the
# budget is what arq's old 25 s job timeout cancelled, and its rows, back with their lease,
# were sent again.
SLOW_RATE = 12_500
# Two rounds of batches; a campaign still going after this is sending rows again.
SLOW_WITHIN_SECONDS = 120.0


async def test_a_slow_provider_alone_never_delivers_twice(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fcm: stack.Fake
) -> None:
    since = fresh(fcm, VERY_SLOW)
    await stack.add_devices(db, SLOW_DEVICES, tag="slow", platform="android")
    operator, _, _ = await keys(make_key)
    env = {
        "WAVECAST_PROVIDER_TIMEOUT_SECONDS": "30",
        "WAVECAST_LEASE_SECONDS": "40",
        # For the send jobs' own account of their batches (`send job finished`).
        "WAVECAST_LOG_LEVEL": "INFO",
        "WAVECAST_JSON_LOGS": "true",
    }
    with worker_pool(db.settings, **fcm.env, **env) as pool:
        pool.spawn(WORKERS)
        await workers_alive(db, WORKERS)
        started = time.monotonic()
        campaign_id = await create_and_start(client, operator, one_wave(SLOW_RATE))
        # Watched as it goes: a second request to any device fails the test at once, with
        # what the ledger and the send jobs said by then, rather than minutes later.
        while True:
            await asyncio.sleep(1.0)
            requests = await sends(fcm, since)
            twice = duplicates(requests)
            done = await campaign_status(db, campaign_id) is CampaignStatus.completed
            took = time.monotonic() - started
            if twice or done or took > SLOW_WITHIN_SECONDS:
                break
        jobs = finished_jobs(pool)
    rows = await ledger(db, campaign_id)
    accepted = Counter(token for token, r in requests if r.status == 200)
    first = min((r.start for _, r in requests), default=0.0)
    starts = sorted({round(r.start - first) for _, r in requests})
    longest = max((j.seconds for j in jobs if j.batches), default=0.0)
    figures = (
        f"FCM at {VERY_SLOW:.0f} s, {SLOW_DEVICES} devices, after {took:.1f}s: "
        f"{len(requests)} requests, {len(accepted)} devices accepted, {len(twice)} asked "
        f"twice or more; requests started at +{starts} s; send jobs (seconds, batches, "
        f"provider seconds, sent, other): {[tuple(j) for j in jobs]}; ledger (status, "
        f"attempts): {dict(Counter(rows.values()))}"
    )
    print("\n" + figures)
    assert twice == {}, f"{len(twice)} devices received two requests or more. {figures}"
    assert done, f"not completed within {SLOW_WITHIN_SECONDS:.0f}s. {figures}"
    assert len(accepted) == SLOW_DEVICES and set(accepted.values()) == {1}
    assert set(rows.values()) == {("sent", 1)}, figures
    assert set(rows) == set(accepted)
    # The scenario did what it is for: every batch waited on the slow provider for the whole
    # latency (a batch's calls go out at once, in calls of 100 over lanes), and send jobs ran
    # to the end of their budget and past it with a batch still on the wire. How far past
    # depends on when the first batch ended, so only the provider's share is pinned.
    slowest = max((j.provider_seconds for j in jobs if j.batches), default=0.0)
    assert slowest >= VERY_SLOW, f"the provider was not slow. {figures}"
    assert longest >= VERY_SLOW, f"no send job waited on the provider. {figures}"


class Job(NamedTuple):
    seconds: float
    batches: int
    provider_seconds: float
    sent: int
    other: int


def finished_jobs(pool: WorkerPool) -> list[Job]:
    """Each `send job finished` line of the workers' JSON logs."""
    jobs = []
    for line in pool.logs().splitlines():
        if '"send job finished"' not in line:
            continue
        try:
            job = json.loads(line)
        except ValueError:
            continue
        jobs.append(
            Job(
                round(float(job["seconds"]), 1),
                int(job["batches"]),
                round(float(job["stage_seconds"].get("provider", 0.0)), 1),
                int(job["sent"]),
                int(job["other"]),
            )
        )
    return jobs


# --- 4. a worker that loses Redis --------------------------------------------------------------


REDIS_LOSS_DEVICES = 4_000
# 485-message batches, each started afresh every few hundred milliseconds at this rate:
# without its fences closing, a worker cut off from Redis would go on starting them for
# seconds.
REDIS_LOSS_RATE = 12_500
REDIS_LOSS_ENV = {"WAVECAST_PROVIDER_TIMEOUT_SECONDS": "10", "WAVECAST_LEASE_SECONDS": "12"}


async def test_a_worker_that_loses_redis_stops_starting_requests_within_the_bound(
    private_redis: tuple[PrivateRedis, Runtime], make_key: KeyMaker, fcm: stack.Fake
) -> None:
    server, runtime = private_redis
    # A 1 s answer: requests keep starting all the time, so a fence left open would show.
    since = fresh(fcm, 1.0)
    await stack.add_devices(runtime, REDIS_LOSS_DEVICES, tag="redis", platform="android")
    operator, _, _ = await keys(make_key)
    app = create_app(runtime.settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as client:
        with worker_pool(runtime.settings, **fcm.env, **REDIS_LOSS_ENV) as pool:
            pool.spawn(WORKERS)
            await workers_alive(runtime, WORKERS)
            campaign_id = await create_and_start(client, operator, one_wave(REDIS_LOSS_RATE))

            async def flowing() -> bool:
                return len(await sends(fcm, since)) >= 600

            await wait_for(flowing, within=60)
            server.stop()
            # Taken once the server is dead: every renewal that confirmed a fence was asked
            # before this instant, so each fence closed by `died + FENCE_SECONDS`.
            died = time.monotonic()
            await asyncio.sleep(FENCE_SECONDS + 3.0)
            while_down = await sends(fcm, since)
            server.start()
            restarted = time.monotonic()

            async def resumed() -> bool:
                return any(r.start > restarted for _, r in await sends(fcm, since))

            async def completed() -> bool:
                return await campaign_status(runtime, campaign_id) is CampaignStatus.completed

            try:
                await wait_for(resumed, within=30, interval=0.1)
                resumed_after = (
                    min(r.start for _, r in await sends(fcm, since) if r.start > restarted)
                    - restarted
                )
                await wait_for(completed, within=90, interval=0.2)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the workers said:\n{pool.logs()}") from None
            requests = await sends(fcm, since)
            alive = len(pool.alive)
            logs = pool.logs()
        rows = await ledger(runtime, campaign_id)
    before = [r for _, r in while_down if r.start <= died]
    after = [r for _, r in while_down if r.start > died]
    last = max((r.start - died for r in after), default=0.0)
    bound = FENCE_SECONDS + SCHEDULING_SLACK_SECONDS
    late = [r for r in after if r.start - died > bound]
    accepted = Counter(token for token, r in requests if r.status == 200)
    twice = duplicates(requests)
    print(
        f"\nRedis lost: {len(before)} requests before, {len(after)} after "
        f"(last +{last * 1000:.0f} ms, {len(late)} beyond {bound:.2f}s); sending resumed "
        f"{resumed_after:.1f}s after the restart; {len(requests)} requests in all, "
        f"{len(twice)} devices asked twice, {len(accepted)} accepted of {REDIS_LOSS_DEVICES}"
    )
    assert before, "nothing was sent before Redis died"
    assert not late, (
        f"{len(late)} requests started more than {bound:.2f}s after Redis died, "
        f"the last {last:.2f}s after\n{logs}"
    )
    assert alive == WORKERS, f"a worker died with Redis\n{logs}"
    # Nothing sent twice, nothing lost: every device accepted exactly once, its row `sent`
    # after one attempt.
    assert twice == {}, f"{len(twice)} devices received two requests"
    assert len(accepted) == REDIS_LOSS_DEVICES and set(accepted.values()) == {1}
    assert Counter(s for s, _ in rows.values()) == {"sent": REDIS_LOSS_DEVICES}
    assert {a for _, a in rows.values()} == {1}
