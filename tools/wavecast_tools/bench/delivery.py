"""Delivery overhead: a campaign sent by a `wavecast worker` next to bare client loops.

For FCM and for APNs, against the protocol fake in its own process (HTTP/2 over TLS, as the
real services speak) and one real `wavecast worker` process with the real provider pointed at
it, `--repeat` rounds, each round running these side by side, in an order that rotates from
round to round (so drift on a shared machine does not favour one of them):

- the bare loop of the client library over the same tokens, on the library's own code path:
  FCM `send_each_async` in batches of 500, once one call after another and once with as many
  calls in flight as a campaign has send jobs (the faster counts); APNs `aioapns` with as many
  requests in flight and connections as the APNs provider uses;
- APNs: the same bare loop on Wavecast's own HTTP/2 request path
  (`providers.apns_protocol`), which is leaner than the library's; FCM: a bare loop of the FCM
  provider's own `send` (its lanes, its client, the campaign's messages); the campaign's rate
  next to this one is what the engine itself (ledger, leases, throttle, gate, guards) costs;
- the campaign: one unthrottled 100 % wave, started the way an operator starts it; the
  worker's tick releases it and its send jobs send it.

Every process here collects its garbage as a Wavecast process does (`app.heap.settle_heap`:
the worker and the fake once started, this process before the rounds), so no side of a
ratio pays the collector's toll the other does not.

Every rate is read off the fake's own records: requests from the first to the last one that
reached it, (n - 1) / (last - first), for each side alike. The targets are medians of the
per-round ratios: the campaign's rate >= 90 % of the bare library loop's (SPEC §5), 95 % for
FCM, and for APNs >= 85 % of the bare loop on its own request path (the engine's cost; issue
"Past one machine", section 5). The lowest and highest round of the engine's cost, and the
load average when the rounds began and ended, say how far a median on a shared machine holds.

Where the time goes, over the campaigns of every round: the share of the send jobs' wall time
in each sender stage (claim, throttle, checks, provider, record; payload building is part of
the provider stage and reported apart) from the worker's log, and CPU seconds per 1,000
messages of each process (the worker, the fake, PostgreSQL's and Redis' server processes when
they run on this machine) for the bare loop and the campaign alike: on a machine with two
cores, every CPU second PostgreSQL spends is one the fake or the worker does not get.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import firebase_admin
import orjson
import psutil
from aioapns import APNs, NotificationRequest, PushType
from aioapns.connection import APNsProductionClientProtocol
from firebase_admin import credentials, messaging
from sqlalchemy import text

from app.campaigns.schemas import Content
from app.delivery.providers import apns as apns_provider
from app.delivery.providers.apns import ApnsCredentials, ApnsProvider
from app.delivery.providers.apns_protocol import ApnsProtocol, Payload
from app.delivery.providers.base import Batch, ResultKind
from app.delivery.providers.base import Message as ProviderMessage
from app.delivery.providers.fcm import FcmProvider
from app.delivery.sender import STAGES
from app.heap import settle_heap
from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, at_least, median, reported
from workers.coordination import PUMPS_PER_CAMPAIGN

TARGET_RATIO = 0.90
# Issue "Past one machine", section 5: the campaign beside the bare loop on its own request
# path, i.e. what the engine itself costs (APNs), and FCM beside the bare send_each_async loop.
ENGINE_TARGET = {"apns": 0.85}
TARGET_BY_PROVIDER = {"fcm": 0.95, "apns": TARGET_RATIO}
DEFAULT_DEVICES = 50_000
UNTHROTTLED = 1_000_000
# A send job's batch at most (the sender's), and so the bare loops' calls and batches.
BATCH = 500
# CPU is charged to these process groups; "bench" is this process (the bare loops' client).
GROUPS = ("bench", "worker", "fake", "postgres", "redis")


@dataclass
class Phase:
    """One side of one round: its rate and the CPU each process group spent on it."""

    rate: float
    messages: int
    cpu: dict[str, float]


@dataclass
class Side:
    """One provider's figures over the rounds."""

    provider: str
    bare: list[Phase] = field(default_factory=list)
    # FCM: one call in flight and PUMPS_PER_CAMPAIGN calls in flight; APNs: the lean path.
    variants: dict[str, list[Phase]] = field(default_factory=dict)
    ours: list[Phase] = field(default_factory=list)
    first_send: list[float] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    job_seconds: float = 0.0
    payload_seconds: float = 0.0

    # The 1-minute load average when the provider's rounds began and when they ended.
    load: list[float] = field(default_factory=list)
    # APNs: PostgreSQL CPU per 1,000 rows of the ledger's floor (`ledger_floor`).
    floor: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        # The median of the side-by-side ratios: drift between rounds cancels within each.
        return median(self.ratios)

    @property
    def ratios(self) -> list[float]:
        """Each round's ratio of the campaign to the bare library loop, in round order."""
        return [o.rate / b.rate for b, o in zip(self.bare, self.ours, strict=True)]

    def ratio_to(self, variant: str) -> float:
        return median(self.ratios_to(variant))

    def ratios_to(self, variant: str) -> list[float]:
        """Each round's ratio of the campaign to `variant`, in round order."""
        return [o.rate / v.rate for v, o in zip(self.variants[variant], self.ours, strict=True)]

    def ratios_between(self, variant: str, to: str) -> list[float]:
        """Each round's ratio of `variant` to `to` (both loops of one round), in round order."""
        pairs = zip(self.variants[variant], self.variants[to], strict=True)
        return [v.rate / t.rate for v, t in pairs]


class CpuMeter:
    """CPU seconds (user + system) of each process group, between two readings."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self._pids = pids

    def _processes(self) -> dict[str, list[psutil.Process]]:
        found: dict[str, list[psutil.Process]] = {group: [] for group in GROUPS}
        for group, pids in self._pids.items():
            for pid in pids:
                try:
                    found[group].append(psutil.Process(pid))
                except psutil.NoSuchProcess:
                    continue
        for process in psutil.process_iter(["name"]):
            name = process.info["name"] or ""
            if name.startswith("postgres"):
                found["postgres"].append(process)
            elif name.startswith("redis-server"):
                found["redis"].append(process)
        return found

    def read(self) -> dict[tuple[str, int], float]:
        seconds = {}
        for group, processes in self._processes().items():
            for process in processes:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                seconds[(group, process.pid)] = times.user + times.system
        return seconds

    @staticmethod
    def spent(
        before: dict[tuple[str, int], float], after: dict[tuple[str, int], float]
    ) -> dict[str, float]:
        totals = dict.fromkeys(GROUPS, 0.0)
        for key, seconds in after.items():
            totals[key[0]] += seconds - before.get(key, 0.0)
        return totals


async def measured(fake: stack.Fake, meter: CpuMeter, run: Callable[[], Awaitable[None]]) -> Phase:
    """Run one side and read its rate off the fake's records, then forget them."""
    since = fake.last_seq()
    before = meter.read()
    await run()
    cpu = CpuMeter.spent(before, meter.read())
    starts = sorted(r.start for r in fake.sends(since))
    fake.forget_records()
    if len(starts) < 2 or starts[-1] <= starts[0]:
        raise RuntimeError(f"only {len(starts)} requests reached the {fake.kind} fake")
    return Phase((len(starts) - 1) / (starts[-1] - starts[0]), len(starts), cpu)


# ------------------------------------------------------------------ bare loops


async def bare_fcm(
    account: Path, url: str, tokens: list[str], calls_in_flight: int, *, as_campaign: bool = False
) -> None:
    """`send_each_async` over the tokens in calls of BATCH. The library loop's messages
    carry a title and body, built before the first call; `as_campaign`: each call's messages
    are built right before it, by the FCM provider's own `build`, with what a campaign of
    `stack.LIVE_CONTENT` sends (Android priority, collapse tag, the delivery reference in
    `data`), so the campaign beside it differs only by the engine."""
    app = firebase_admin.initialize_app(
        credentials.Certificate(str(account)), name=f"bare-{os.getpid()}-{time.time()}"
    )
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{url}/v1/projects/{app.project_id}/messages:send"
    builder = FcmProvider(str(account)) if as_campaign else None
    content = Content.model_validate(stack.LIVE_CONTENT)
    campaign_id = str(uuid.uuid4())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Message.token -> fid
        batches = [
            [
                messaging.Message(
                    token=t, notification=messaging.Notification(title="Statement", body="Ready")
                )
                for t in tokens[i : i + BATCH]
            ]
            if builder is None
            else []
            for i in range(0, len(tokens), BATCH)
        ]
    calls = asyncio.Semaphore(calls_in_flight)

    async def one(number: int, batch: list[messaging.Message]) -> None:
        async with calls:
            if builder is not None:
                chunk = _chunk(tokens, number * BATCH)
                batch = builder.build(Batch(campaign_id, content, chunk), chunk)
            answer = await messaging.send_each_async(batch, app=app)
        if answer.failure_count:
            raise RuntimeError(f"the bare FCM loop failed: {answer.responses[0].exception}")

    try:
        await asyncio.gather(*(one(n, b) for n, b in enumerate(batches)))
    finally:
        if builder is not None:
            await builder.aclose()
        await service._async_client.aclose()
        # It closes its services with asyncio.run(): not from inside this event loop.
        await asyncio.to_thread(firebase_admin.delete_app, app)


def _chunk(
    tokens: list[str], first: int, platform: str = "android", environment: str | None = None
) -> list[ProviderMessage]:
    """The provider's messages for BATCH tokens from `first`, as a claim hands them over."""
    return [
        ProviderMessage(first + k + 1, uuid.UUID(int=first + k), t, platform, None, environment)
        for k, t in enumerate(tokens[first : first + BATCH])
    ]


async def _provider_loop(
    provider: FcmProvider | ApnsProvider,
    tokens: list[str],
    batches_in_flight: int,
    platform: str,
    environment: str | None = None,
) -> None:
    """`provider.send` over the tokens in batches of BATCH, `batches_in_flight` at once, with
    the messages a campaign of `stack.LIVE_CONTENT` sends; closes the provider."""
    content = Content.model_validate(stack.LIVE_CONTENT)
    campaign_id = str(uuid.uuid4())
    in_flight = asyncio.Semaphore(batches_in_flight)

    async def one(first: int) -> None:
        chunk = _chunk(tokens, first, platform, environment)
        async with in_flight:
            results = await provider.send(Batch(campaign_id, content, chunk))
        failed = [r for r in results if r.kind is not ResultKind.sent]
        if failed:
            raise RuntimeError(f"the {provider.name} provider's loop failed: {failed[0]}")

    try:
        await asyncio.gather(*(one(first) for first in range(0, len(tokens), BATCH)))
    finally:
        await provider.aclose()


async def bare_fcm_own_path(
    account: Path, url: str, tokens: list[str], batches_in_flight: int = 1
) -> None:
    """The campaign's own request path without the engine: the FCM provider's `send` over the
    tokens in batches of BATCH (the provider splits each over its lanes, as it does a
    send job's), with the messages a campaign of `stack.LIVE_CONTENT` sends. Campaign ÷ this
    loop is what the engine itself costs; with as many batches in flight as a campaign has
    send jobs, how much of that is the send jobs running side by side."""
    provider = FcmProvider(str(account), endpoint=url)
    await _provider_loop(provider, tokens, batches_in_flight, "android")


async def bare_apns(fake: stack.Fake, tokens: list[str], *, lean: bool) -> None:
    """aioapns over the tokens, as many in flight as the provider allows; `lean`: on
    Wavecast's own request path (`ApnsProtocol`, the body encoded once) instead of the
    library's."""
    env = fake.env
    client = APNs(
        key=await asyncio.to_thread(Path(env["WAVECAST_APNS_KEY"]).read_text),
        key_id=env["WAVECAST_APNS_KEY_ID"],
        team_id=env["WAVECAST_APNS_TEAM_ID"],
        topic=stack.TOPIC,
        use_sandbox=False,
        ssl_context=ssl.create_default_context(cafile=env["WAVECAST_APNS_CA_FILE"]),
        max_connections=apns_provider.MAX_CONNECTIONS,
        max_connection_attempts=1 if lean else 5,
    )
    parts = urlsplit(env["WAVECAST_APNS_PRODUCTION_URL"])
    client.pool.protocol_class = type(
        "BareApns",
        (ApnsProtocol if lean else APNsProductionClientProtocol,),
        {"APNS_SERVER": parts.hostname, "APNS_PORT": parts.port},
    )
    alert = {"aps": {"alert": {"title": "Statement", "body": "Ready"}}}
    message: Any = Payload(orjson.dumps(alert)) if lean else alert
    limit = asyncio.Semaphore(apns_provider.CONCURRENCY)

    async def one(token: str) -> None:
        async with limit:
            request = NotificationRequest(
                device_token=token, message=message, push_type=PushType.ALERT
            )
            result = await client.send_notification(request)
        if not result.is_successful:
            raise RuntimeError(f"the bare APNs loop failed: {result.description}")

    try:
        await asyncio.gather(*(one(t) for t in tokens))
    finally:
        client.pool.close()


async def bare_apns_own_path(fake: stack.Fake, tokens: list[str]) -> None:
    """The APNs provider's own `send` without the engine: batches of BATCH (a send job's
    size), as many in flight as a campaign has send jobs, with the messages a campaign of
    `stack.LIVE_CONTENT` sends (its payload with each delivery reference, collapse id,
    expiry and priority). Campaign ÷ this loop is the engine's cost beyond the provider: the
    claim, the record, the throttle and the gate; the lean loop's ratio also holds the
    provider's own work per message (building the payloads, classifying each answer)."""
    env = fake.env
    provider = ApnsProvider(
        ApnsCredentials(
            env["WAVECAST_APNS_KEY"],
            env["WAVECAST_APNS_KEY_ID"],
            env["WAVECAST_APNS_TEAM_ID"],
            stack.TOPIC,
        ),
        production_url=env["WAVECAST_APNS_PRODUCTION_URL"],
        ca_file=env["WAVECAST_APNS_CA_FILE"],
    )
    await _provider_loop(provider, tokens, PUMPS_PER_CAMPAIGN, "ios", "production")


# ------------------------------------------------------------------ the ledger's floor

# The floor of what PostgreSQL spends on the ledger, whatever the engine around it: a table
# with its primary key only, rows written in batches of the campaign's size, each row leased
# (one UPDATE a batch) then given its outcome (one UPDATE a batch from arrays), as a claim and
# a record do, without the audience, the partitions or the ledger's other indexes. The CPU is
# the statements' own, read from their server process (`pg_backend_pid`): PostgreSQL's other
# processes (the WAL writer, the checkpointer, autovacuum where it runs) are not the floor's.
FLOOR_TABLE = "bench_ledger_floor"
FLOOR_BATCH = 388


async def ledger_floor(runtime: Runtime, rows: int) -> dict[str, float]:
    """PostgreSQL CPU seconds per 1,000 rows for the floor's lease writes and outcome writes,
    measured apart (the rows are inserted before either is timed)."""
    ids = list(range(1, rows + 1))
    batches = [ids[i : i + FLOOR_BATCH] for i in range(0, rows, FLOOR_BATCH)]
    async with runtime.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        backend = psutil.Process(
            int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        )
        await conn.execute(text(f"DROP TABLE IF EXISTS {FLOOR_TABLE}"))
        await conn.execute(
            text(
                f"CREATE TABLE {FLOOR_TABLE} (id bigint PRIMARY KEY, status varchar(16) NOT NULL,"
                " lease uuid, sent_at timestamptz, message_id varchar(256))"
            )
        )
        try:
            await conn.execute(
                text(
                    f"INSERT INTO {FLOOR_TABLE} (id, status) "
                    "SELECT g, 'queued' FROM generate_series(1, :n) g"
                ),
                {"n": rows},
            )
            await conn.execute(text(f"VACUUM ANALYZE {FLOOR_TABLE}"))
            spent = {}
            for name, statement in (
                (
                    "lease",
                    f"UPDATE {FLOOR_TABLE} SET status = 'sending', lease = gen_random_uuid() "
                    "WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'queued'",
                ),
                (
                    "outcome",
                    f"UPDATE {FLOOR_TABLE} AS d SET status = 'sent', lease = NULL, "
                    "sent_at = now(), message_id = v.m FROM unnest(CAST(:ids AS bigint[]), "
                    "CAST(:ms AS varchar[])) AS v(id, m) WHERE d.id = v.id "
                    "AND d.status = 'sending'",
                ),
            ):
                # Statistics of the table as the statement finds it (taken after the inserts,
                # they say no row is `sending`, and the outcome writes would scan the table
                # for each batch); not timed.
                await conn.execute(text(f"ANALYZE {FLOOR_TABLE}"))
                before = sum(backend.cpu_times()[:2])
                for batch in batches:
                    # Each statement its own transaction, as each claim and record is.
                    await conn.execute(
                        text(statement), {"ids": batch, "ms": [f"m-{i}" for i in batch]}
                    )
                spent[name] = 1000 * (sum(backend.cpu_times()[:2]) - before) / rows
            return spent
        finally:
            await conn.execute(text(f"DROP TABLE IF EXISTS {FLOOR_TABLE}"))


# ------------------------------------------------------------------ the campaign


async def campaign(runtime: Runtime, tag: str, side: Side) -> None:
    campaign_id = await stack.start_campaign(runtime, tag=tag, per_second=UNTHROTTLED)
    while (status := await stack.campaign_status(runtime, campaign_id)) != "completed":
        if status in {"paused", "killed", "cancelled"}:
            raise RuntimeError(f"the benchmark campaign is {status}, not completed")
        await asyncio.sleep(0.1)
    async with runtime.engine.connect() as conn:
        first, sent = (
            await conn.execute(
                text(
                    "SELECT min(sent_at), count(*) FILTER (WHERE status = 'sent') "
                    "FROM delivery WHERE campaign_id = :id"
                ),
                {"id": campaign_id},
            )
        ).one()
        started_at = (
            await conn.execute(
                text("SELECT started_at FROM campaign WHERE id = :id"), {"id": campaign_id}
            )
        ).scalar_one()
    if sent == 0:
        raise RuntimeError("the benchmark campaign sent nothing")
    side.first_send.append((first - started_at).total_seconds())


def read_stages(log: Path, side: Side) -> None:
    """Sum the worker's "send job finished" lines: stage seconds, job seconds, payloads."""
    payload = 0.0
    for entry in stack.send_jobs(log):
        if not entry.get("sent"):
            continue
        side.job_seconds += float(entry["seconds"])
        for stage, seconds in entry["stage_seconds"].items():
            side.stages[stage] = side.stages.get(stage, 0.0) + float(seconds)
        payload = max(payload, float(entry.get("payload_seconds", 0.0)))
    side.payload_seconds = payload


async def tokens_of(runtime: Runtime) -> list[str]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(text("SELECT token FROM device ORDER BY token"))
        return [row[0] for row in rows]


async def run_provider(settings: Settings, provider: str, count: int, repeat: int) -> Side:
    work = stack.workdir(f"delivery-{provider}")
    platform = "android" if provider == "fcm" else "ios"
    side = Side(provider)
    runtime = await Runtime.start(settings)
    try:
        await stack.empty_stores(runtime)
        await stack.add_devices(runtime, count, tag=provider, platform=platform)
        async with runtime.engine.connect() as conn:
            # Fresh statistics and visibility for what was just written, as autovacuum
            # would settle them in production: no round pays for them mid-run.
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE device"))
        tokens = await tokens_of(runtime)
        # The bare loops run in this process: its collector is settled as the worker's is,
        # so the loops and the campaign are collected alike.
        settle_heap()
        with (
            stack.fake(provider, work, recording="light", tls=True) as fake,
            stack.workers(
                settings,
                1,
                work,
                **fake.env,
                WAVECAST_LOG_LEVEL="INFO",
                WAVECAST_JSON_LOGS="true",
            ) as procs,
        ):
            await stack.workers_alive(runtime.redis, 1)
            meter = CpuMeter(
                {"bench": [os.getpid()], "worker": [p.pid for p in procs], "fake": [fake.pid]}
            )
            sides = _sides(provider, fake, tokens, work, runtime, side)
            side.load.append(os.getloadavg()[0])
            # A first campaign and bare loop warm every connection and cache; not counted.
            for run in sides.values():
                await run()
                fake.forget_records()
            for round_ in range(repeat):
                names = list(sides)
                shift = round_ % len(names)
                for name in names[shift:] + names[:shift]:
                    phase = await measured(fake, meter, sides[name])
                    if name == "campaign":
                        side.ours.append(phase)
                    elif name == "bare":
                        side.bare.append(phase)
                    else:
                        side.variants.setdefault(name, []).append(phase)
                if provider == "fcm":
                    # The faster of the two library loops is the baseline.
                    one, many = side.variants["1 call"][-1], side.variants["parallel"][-1]
                    side.bare.append(one if one.rate >= many.rate else many)
            side.load.append(os.getloadavg()[0])
            if "lean" in side.variants:
                side.floor = await ledger_floor(runtime, count)
        # The warm-up campaign's jobs are in the log too: the stage shares cover them.
        read_stages(work / "worker-0.log", side)
        side.first_send = side.first_send[1:]
    finally:
        await runtime.close()
    return side


def _sides(
    provider: str,
    fake: stack.Fake,
    tokens: list[str],
    work: Path,
    runtime: Runtime,
    side: Side,
) -> dict[str, Callable[[], Awaitable[None]]]:
    async def ours() -> None:
        await campaign(runtime, provider, side)

    if provider == "fcm":
        account = work / "service-account.json"
        endpoint = fake.env["WAVECAST_FCM_ENDPOINT"]
        # httpx and requests read these when a client is built: the bare loop trusts the
        # fake's CA as the worker does.
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            if name in fake.env:
                os.environ[name] = fake.env[name]
        return {
            "1 call": lambda: bare_fcm(account, endpoint, tokens, 1),
            "parallel": lambda: bare_fcm(account, endpoint, tokens, PUMPS_PER_CAMPAIGN),
            "as campaign": lambda: bare_fcm(account, endpoint, tokens, 1, as_campaign=True),
            "own path": lambda: bare_fcm_own_path(account, endpoint, tokens),
            "own path, parallel": lambda: bare_fcm_own_path(
                account, endpoint, tokens, PUMPS_PER_CAMPAIGN
            ),
            "campaign": ours,
        }
    return {
        "bare": lambda: bare_apns(fake, tokens, lean=False),
        "lean": lambda: bare_apns(fake, tokens, lean=True),
        "own path": lambda: bare_apns_own_path(fake, tokens),
        "campaign": ours,
    }


async def run(settings: Settings, count: int, only: set[str], repeat: int) -> list[Side]:
    return [
        await run_provider(settings, provider, count, repeat)
        for provider in ("fcm", "apns")
        if provider in only
    ]


DESCRIPTION = "campaign send rate (a worker process) vs bare client loops, FCM and APNs fakes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="per provider")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per provider (medians)")
    parser.add_argument(
        "--only", choices=("fcm", "apns"), action="append", help="one provider (repeatable)"
    )


def _cpu_figures(name: str, label: str, phases: list[Phase]) -> list[Figure]:
    figures = []
    for group in GROUPS:
        per_thousand = median(1000 * p.cpu[group] / p.messages for p in phases)
        if per_thousand >= 0.0005:
            figures.append(
                reported(
                    "delivery",
                    f"{name} {label}: CPU of {group} per 1,000 messages",
                    per_thousand,
                    "s",
                )
            )
    return figures


def _total_cpu(phases: list[Phase]) -> float:
    """CPU seconds per 1,000 messages, every process group together (median over rounds)."""
    return median(1000 * sum(p.cpu.values()) / p.messages for p in phases)


def _budget_figures(name: str, side: Side, target: float | None) -> list[Figure]:
    """What the engine may spend beside the bare loop on its request path and still reach
    `target`, against what it spends and the ledger's floor. The bare loop keeps this
    machine's cores busy (its CPU per message times its rate is the cores it got); a
    campaign at `target` times that rate, on no more cores, may spend per message at most
    the bare loop's CPU divided by `target`, of which the request path and the fake take the
    bare loop's own share."""
    bare = _total_cpu(side.variants["lean"])
    ours = _total_cpu(side.ours)
    cores = median(p.rate * sum(p.cpu.values()) / p.messages for p in side.variants["lean"])
    figures = [
        reported("delivery", f"{name} bare loop, own request path: cores busy", cores, ""),
        reported(
            "delivery", f"{name} bare loop, own request path: CPU per 1,000 messages", bare, "s"
        ),
        reported("delivery", f"{name} campaign: CPU per 1,000 messages", ours, "s"),
        reported("delivery", f"{name} CPU the engine adds per 1,000 messages", ours - bare, "s"),
    ]
    if target is not None:
        figures.append(
            reported(
                "delivery",
                f"{name} CPU the engine may add per 1,000 messages at {target:g}",
                bare / target - bare,
                "s",
            )
        )
    for write, seconds in side.floor.items():
        figures.append(
            reported(
                "delivery",
                f"{name} ledger floor: PostgreSQL CPU per 1,000 rows, {write} writes",
                seconds,
                "s",
            )
        )
    return figures


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    figures = []
    only = set(args.only or ("fcm", "apns"))
    for side in asyncio.run(run(settings, args.devices, only, args.repeat)):
        name = side.provider
        for variant, phases in side.variants.items():
            label = {
                "1 call": "bare loop, 1 call in flight",
                "parallel": f"bare loop, {PUMPS_PER_CAMPAIGN} calls in flight",
                "lean": "bare loop on the provider's own request path",
                "as campaign": "bare loop, 1 call in flight, the campaign's messages",
                "own path": (
                    "bare loop on the provider's own request path"
                    if name == "fcm"
                    else f"the provider's send loop, {PUMPS_PER_CAMPAIGN} batches in flight"
                ),
                "own path, parallel": (
                    f"bare loop on the provider's own request path, "
                    f"{PUMPS_PER_CAMPAIGN} batches in flight"
                ),
            }[variant]
            figures.append(
                reported("delivery", f"{name} {label}", median(p.rate for p in phases), "msg/s")
            )
        figures += [
            reported("delivery", f"{name} bare loop", median(p.rate for p in side.bare), "msg/s"),
            reported(
                "delivery", f"{name} through wavecast", median(p.rate for p in side.ours), "msg/s"
            ),
            at_least(
                "delivery",
                f"{name} ratio (to the bare loop)",
                side.ratio,
                "x",
                TARGET_BY_PROVIDER.get(name, TARGET_RATIO),
            ),
        ]
        # On a shared machine one round can land in someone else's burst: the spread says
        # how far to trust a median.
        library = side.ratios
        figures += [
            reported("delivery", f"{name} ratio to the bare loop, lowest round", min(library), "x"),
            reported(
                "delivery", f"{name} ratio to the bare loop, highest round", max(library), "x"
            ),
        ]
        same_path = next((v for v in ("lean", "own path") if v in side.variants), None)
        if same_path is not None:
            label = f"{name} ratio to the bare loop on the same request path (engine's cost)"
            engine = side.ratio_to(same_path)
            target = ENGINE_TARGET.get(name)
            figures.append(
                reported("delivery", label, engine, "x")
                if target is None
                else at_least("delivery", label, engine, "x", target)
            )
            rounds = side.ratios_to(same_path)
            figures += [
                reported("delivery", f"{name} engine's cost, lowest round", min(rounds), "x"),
                reported("delivery", f"{name} engine's cost, highest round", max(rounds), "x"),
            ]
            if same_path == "lean":
                figures += _budget_figures(name, side, target)
        if "as campaign" in side.variants:
            # The target stays the library loop's; this says how much of the gap is the
            # campaign's richer messages rather than the engine.
            figures.append(
                reported(
                    "delivery",
                    f"{name} ratio to the bare loop sending the campaign's messages",
                    side.ratio_to("as campaign"),
                    "x",
                )
            )
            figures += _cpu_figures(
                name, "bare loop, the campaign's messages", side.variants["as campaign"]
            )
        if same_path == "lean" and "own path" in side.variants:
            # Beside the lean loop's ratio: how much of the engine's cost is the provider's own
            # work per message (payloads, answers) and how much the rest of the engine.
            figures.append(
                reported(
                    "delivery",
                    f"{name} ratio to the provider's send loop (the engine beyond the provider)",
                    side.ratio_to("own path"),
                    "x",
                )
            )
            # The provider's send loop has no engine around it and runs in one process, as a
            # campaign's worker does: its rate over the lean loop's bounds campaign ÷ lean
            # loop for a campaign sent by one worker process through this provider.
            ceiling = side.ratios_between("own path", "lean")
            label = f"{name} the provider's send loop ÷ the lean loop"
            figures += [
                reported("delivery", f"{label} (one worker's ceiling)", median(ceiling), "x"),
                reported("delivery", f"{label}, lowest round", min(ceiling), "x"),
                reported("delivery", f"{label}, highest round", max(ceiling), "x"),
            ]
            figures += _cpu_figures(name, "the provider's send loop", side.variants["own path"])
        if "own path, parallel" in side.variants:
            figures.append(
                reported(
                    "delivery",
                    f"{name} ratio to the bare loop on the same request path, "
                    f"{PUMPS_PER_CAMPAIGN} batches in flight",
                    side.ratio_to("own path, parallel"),
                    "x",
                )
            )
        if len(side.load) == 2:
            figures += [
                reported("delivery", f"{name} load average (1 min) at start", side.load[0], ""),
                reported("delivery", f"{name} load average (1 min) at end", side.load[1], ""),
            ]
        figures.append(
            reported(
                "delivery",
                f"{name} start -> first send (median)",
                median(side.first_send) if side.first_send else float("nan"),
                "s",
            )
        )
        # Where the send jobs' wall time went (jobs overlap, so each share is of their summed
        # time); the rest is the jobs' own bookkeeping (pre-send decisions, outcome mapping).
        for stage in STAGES:
            share = side.stages.get(stage, 0.0) / side.job_seconds if side.job_seconds else 0.0
            figures.append(reported("delivery", f"{name} time in {stage}", 100 * share, "%"))
        figures.append(
            reported(
                "delivery",
                f"{name} time building payloads",
                100 * side.payload_seconds / side.job_seconds if side.job_seconds else 0.0,
                "%",
            )
        )
        figures += _cpu_figures(name, "bare loop", side.bare)
        if same_path is not None:
            figures += _cpu_figures(name, "bare loop, own request path", side.variants[same_path])
        figures += _cpu_figures(name, "campaign", side.ours)
    return figures
