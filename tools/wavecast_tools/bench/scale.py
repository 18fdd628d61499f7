"""Scale: a 1,000,000-device audience (or 10,000,000 with `--devices`) in PostgreSQL, sent in
waves by a real worker process.

1. The first `--import-devices` devices go through the bulk importer (NDJSON, the HTTP
   import's code path): the import rate. The rest are filled by one `INSERT ... SELECT
   FROM generate_series` per 100,000 rows (ids UUIDv7-shaped, buckets by the same sha256
   definition as app.rollout.bucketing): reported as the fill rate, not as an import rate.
2. One `wavecast worker` process (sandbox provider) runs a campaign to the whole audience
   with waves `--waves` (cumulative percents, no holds). Its RSS is sampled all along.
3. Per wave: release → first send (from the wave's `released_at`, the tick's decision time,
   to the first `sent_at`); planning rows/s (the first release chunk's rows / time from the
   decision to the worker's "wave released" log line, which follows that chunk's
   statements); ledger rows/s (rows recorded sent per second from the first to the last
   send of the campaign); over the whole campaign, the send jobs' time per batch in the
   claim and in the record (their "send job finished" log lines), where a plan or a cache
   that degrades with the audience's size shows (release → first send times only a wave's
   first claims).
5. The worker's RSS along the run (at each tenth of it) and its growth over the second
   half, the machine's load average at the start and the end, and the commit measured.
4. With `--explain`, the release and claim statements run once more under auto_explain
   (ANALYZE, BUFFERS) in a rolled-back transaction and their plans are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.audiences.service import audience_filter
from app.audiences.versions import version_key
from app.auth.principal import SYSTEM
from app.campaigns import service as campaigns
from app.campaigns.schemas import CampaignCreate
from app.control.plane import Control
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger
from app.demo import fake_registrations
from app.devices import importer
from app.rollout import engine
from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, at_least, at_most, reported
from workers.jobs import pump_timeout

DESCRIPTION = "1M/10M-device audience: import, wave planning, release to first send, ledger, RSS"
SCENARIO = "scale"
FIRST_SEND_TARGET_SECONDS = 2.0
RSS_TARGET_MB = 200.0
IMPORT_TARGET_PER_SECOND = 50_000
FILL_ROWS = 100_000
# How often the campaign's status is read (whether it still runs).
STATUS_SECONDS = 5.0
# The progress line's count of rows sent (a read of the campaign's rows) is this rare.
PROGRESS_SECONDS = 30.0

_VERSIONS = ["5.9.2", "5.10.0", "5.10.1", "5.11.0", "5.12.0", "5.12.1", "6.0.0"]
_FILL = """
    INSERT INTO device (id, token, platform, user_id, locale, timezone, app_version,
                        app_version_key, tags, attributes, apns_environment, is_test_device,
                        status, bucket, last_seen_at, created_at, updated_at)
    SELECT id, token, platform, 'cust-' || i, locale, zone, version, version_key,
           tags, jsonb_build_object('segment', segment, 'age', 18 + i % 70),
           CASE WHEN platform = 'ios' THEN 'production' END, false, 'active',
           ('x' || left(encode(sha256(uuid_send(id)), 'hex'), 8))::bit(32)::bigint,
           now(), now(), now()
    FROM (
        SELECT i,
               encode(set_byte(overlay(r PLACING stamp FROM 1 FOR 6), 6,
                               (get_byte(r, 6) & 15) | 112), 'hex')::uuid AS id,
               'fill-' || md5(i::text) || '-APA91b' || md5('t' || i) || md5('u' || i) AS token,
               CASE WHEN i % 20 < 9 THEN 'ios' ELSE 'android' END AS platform,
               (ARRAY['pl-PL', 'en-GB', 'de-DE', 'uk-UA', 'cs-CZ'])[1 + i % 5] AS locale,
               (ARRAY['Europe/Warsaw', 'Europe/London', 'Europe/Berlin', 'Europe/Kyiv',
                      'Europe/Prague'])[1 + i % 5] AS zone,
               (CAST(:versions AS text[]))[1 + i % 7] AS version,
               (CAST(:keys AS text[]))[1 + i % 7] AS version_key,
               (ARRAY['[]', '["premium"]', '["student", "new"]', '["cards"]'])[1 + i % 4]::jsonb
                   AS tags,
               (ARRAY['retail', 'private', 'sme', 'corporate'])[1 + i % 4] AS segment
        FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS i,
             LATERAL (SELECT uuid_send(gen_random_uuid()) AS r,
                             substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)
                                                ::bigint) FROM 3) AS stamp
                     WHERE i IS NOT NULL) AS random  -- correlated: a new id per row
    ) AS generated
"""


@dataclass
class Memory:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)

    def at(self, fraction: float) -> float:
        return self.samples[min(len(self.samples) - 1, int(fraction * len(self.samples)))][1]

    @property
    def peak(self) -> float:
        return max(mb for _, mb in self.samples)

    @property
    def second_half_growth(self) -> float:
        """End minus middle: what a worker that holds on to what it sent would show."""
        return self.samples[-1][1] - self.at(0.5)

    def timeline(self) -> str:
        """RSS at each tenth of the run: flat or not, at a glance."""
        return ", ".join(
            f"{self.samples[min(len(self.samples) - 1, int(k / 10 * len(self.samples)))][0]:.0f}s "
            f"{self.at(k / 10):.0f} MB"
            for k in range(11)
        )


async def _reset(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text("TRUNCATE sandbox_message, delivery, campaign_wave, campaign, device CASCADE")
        )


async def _reuse(runtime: Runtime, devices: int) -> bool:
    """Keep the devices of an earlier run when there are exactly `devices` of them, all
    active (the campaigns and their ledger go): True if kept."""
    async with runtime.engine.begin() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FILTER (WHERE status = 'active') FROM device"))
        ).scalar_one()
        if count != devices:
            return False
        await conn.execute(
            text("TRUNCATE sandbox_message, delivery, campaign_wave, campaign CASCADE")
        )
    return True


async def _import(runtime: Runtime, count: int) -> float:
    data = b"\n".join(
        orjson.dumps(reg.model_dump(mode="json", exclude_none=True))
        for reg in fake_registrations(count, seed=7)
    )

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 1 << 20):
            yield data[start : start + (1 << 20)]

    started = time.perf_counter()
    result = await importer.import_stream(runtime.sessionmaker, chunks())
    elapsed = time.perf_counter() - started
    if result.created != count:
        raise RuntimeError(f"import created {result.created} of {count}: {result.rejected[:3]}")
    return count / elapsed


async def _fill(runtime: Runtime, first: int, last: int) -> float:
    keys = [version_key(v) for v in _VERSIONS]
    started = time.perf_counter()
    for start in range(first, last + 1, FILL_ROWS):
        async with runtime.engine.begin() as conn:
            await conn.execute(
                text(_FILL),
                {
                    "first": start,
                    "last": min(last, start + FILL_ROWS - 1),
                    "versions": _VERSIONS,
                    "keys": keys,
                },
            )
        print(f"  filled {min(last, start + FILL_ROWS - 1):,} devices", file=sys.stderr)
    elapsed = time.perf_counter() - started
    async with runtime.engine.begin() as conn:
        await conn.execute(text("ANALYZE device"))
    return (last - first + 1) / elapsed


def _worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WAVECAST_DATABASE_URL": settings.effective_database_url,
        "WAVECAST_REDIS_URL": settings.redis_url,
        "WAVECAST_PROVIDER": "sandbox",
        "WAVECAST_LOG_LEVEL": "INFO",
        # Several workers share this machine: their metrics endpoints would want one port.
        "WAVECAST_WORKER_METRICS_PORT": "0",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], env=env, stdout=out, stderr=out
        )


async def _start_campaign(runtime: Runtime, settings: Settings, waves: list[Decimal]) -> uuid.UUID:
    body = CampaignCreate.model_validate(
        {
            "name": "scale bench",
            "kind": "live",
            "content": {"title": "Your statement is ready", "body": "Log in to see it."},
            "audience": {"rules": {"everyone": True}},
            "rollout": {"waves": [{"percent": str(p), "hold_seconds": 0} for p in waves]},
            "throttle": {"per_second": 1_000_000},
        }
    )
    async with unit_of_work(runtime.sessionmaker) as session:
        campaign = await campaigns.create(session, settings, SYSTEM, body)
        campaign = await campaigns.start(
            session, settings, SYSTEM, campaign.id, override_reason=None, reason="scale bench"
        )
    await Control(runtime.redis).publish_campaign(campaign)
    return campaign.id


async def _status(
    runtime: Runtime, campaign_id: uuid.UUID, *, count: bool
) -> tuple[str, int | None]:
    """The campaign's status, and with `count` its rows sent so far: a count that reads the
    campaign's rows (270–290 ms of PostgreSQL's time at 1,000,000), so the progress line asks
    for it only every PROGRESS_SECONDS, not at every look at the status."""
    sent = (
        "(SELECT count(*) FROM delivery d WHERE d.campaign_id = c.id AND d.status = 'sent')"
        if count
        else "NULL"
    )
    async with runtime.engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT c.status, {sent} FROM campaign c WHERE c.id = :id"),
                {"id": campaign_id},
            )
        ).one()
    return str(row[0]), None if row[1] is None else int(row[1])


async def _first_sends(runtime: Runtime, campaign_id: uuid.UUID) -> int:
    """How many waves have sent their first row."""
    async with runtime.engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM campaign_wave w WHERE w.campaign_id = :id"
                        " AND EXISTS (SELECT FROM delivery d WHERE d.campaign_id = w.campaign_id"
                        " AND d.wave = w.index AND d.sent_at IS NOT NULL)"
                    ),
                    {"id": campaign_id},
                )
            ).scalar_one()
        )


async def _watch(
    runtime: Runtime,
    campaign_id: uuid.UUID,
    worker: psutil.Process,
    deadline: float,
    first_sends: int = 0,
) -> tuple[Memory, bool]:
    """The worker's RSS until the campaign stops running (True) or the deadline (False:
    the figures then cover what was sent by then); with `first_sends`, until that many
    waves have sent their first row (True)."""
    memory = Memory()
    started = time.monotonic()
    last_check = last_progress = 0.0
    while time.monotonic() < deadline:
        memory.samples.append((time.monotonic() - started, worker.memory_info().rss / (1 << 20)))
        if time.monotonic() - last_check >= STATUS_SECONDS:
            last_check = time.monotonic()
            progress = last_check - last_progress >= PROGRESS_SECONDS
            status, sent = await _status(runtime, campaign_id, count=progress)
            if sent is not None:
                last_progress = last_check
                print(
                    f"  {status}: {sent:,} sent, worker RSS {memory.samples[-1][1]:.0f} MB",
                    file=sys.stderr,
                )
            if status != "running":
                return memory, True
            if first_sends and await _first_sends(runtime, campaign_id) >= first_sends:
                print(f"  the first {first_sends} waves have sent: stopping", file=sys.stderr)
                return memory, True
        await asyncio.sleep(0.25)
    print("  the campaign did not finish in time: figures up to now", file=sys.stderr)
    return memory, False


def _released_log_times(log: Path) -> dict[int, datetime]:
    """When the worker logged each wave's release (after its statements, before commit)."""
    times = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"wave released"' not in line:
            continue
        record: dict[str, Any] = json.loads(line)
        stamp = datetime.strptime(record["time"], "%Y-%m-%d %H:%M:%S,%f").astimezone(UTC)
        times[int(record["wave"])] = stamp
    return times


@dataclass
class JobStages:
    """The send jobs' "send job finished" lines of a worker's log, summed: what a claim and a
    record cost at this audience's size (the delivery scenario measures them at 50,000)."""

    batches: int = 0
    sent: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def per_batch_ms(self, stage: str) -> float:
        return 1000 * self.seconds.get(stage, 0.0) / max(1, self.batches)


def _job_stages(log: Path) -> JobStages:
    stages = JobStages()
    for record in stack.send_jobs(log):
        stages.batches += int(record.get("batches", 0))
        stages.sent += int(record.get("sent", 0))
        for stage, seconds in record.get("stage_seconds", {}).items():
            stages.seconds[stage] = stages.seconds.get(stage, 0.0) + float(seconds)
    return stages


async def _waves(runtime: Runtime, campaign_id: uuid.UUID) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT w.index, w.released_at, count(d.id), min(d.sent_at), max(d.sent_at),"
                    " count(d.sent_at)"
                    " FROM campaign_wave w JOIN delivery d ON d.campaign_id = w.campaign_id"
                    " AND d.wave = w.index WHERE w.campaign_id = :id"
                    " GROUP BY w.index, w.released_at ORDER BY w.index"
                ),
                {"id": campaign_id},
            )
        ).all()
    return [
        {
            "wave": r[0],
            "released_at": r[1],
            "rows": r[2],
            "first_sent": r[3],
            "last_sent": r[4],
            "sent": r[5],
        }
        for r in rows
    ]


async def explaining(conn: AsyncConnection) -> list[str]:
    """Turn PostgreSQL's auto_explain on for `conn`: the plan of every statement it runs
    from now on arrives as a notice, appended to the list returned."""
    notices: list[str] = []
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    driver.add_log_listener(lambda _c, message: notices.append(message.message))
    await conn.execute(text("LOAD 'auto_explain'"))
    for setting in (
        "log_min_duration = 0",
        "log_analyze = on",
        "log_buffers = on",
        "log_timing = on",
        "log_level = notice",
    ):
        await conn.execute(text(f"SET auto_explain.{setting}"))
    await conn.commit()
    return notices


async def explain(runtime: Runtime, campaign_id: uuid.UUID) -> str:
    """The plans of one release chunk and one claim at this size, from auto_explain, rolled
    back (after the campaign, so the ledger holds what it sent)."""
    async with runtime.engine.connect() as conn:
        notices = await explaining(conn)
        transaction = await conn.begin()
        async with runtime.sessionmaker(bind=conn) as session:
            campaign = await campaigns.get(session, campaign_id)
            audience = audience_filter(campaign.audience_rules, now=utcnow())
            size = await ledger.count_audience(session, audience)
            count = engine.RELEASE_CHUNK_ROWS
            notices.clear()
            position = None
            if campaign.plan_bucket is not None and campaign.plan_device_id is not None:
                position = ledger.PlanPosition(campaign.plan_bucket, campaign.plan_device_id)
            members = await ledger.plan_members(
                session,
                campaign_id=campaign_id,
                rotation=campaign.rotation,
                audience=audience,
                limit=count,
                position=position,
                sweep_behind=True,
            )
            await ledger.add_members(
                session,
                campaign_id=campaign_id,
                wave=99,
                device_ids=[m.device_id for m in members],
                now=utcnow(),
            )
            release = [n for n in notices if "Limit" in n or "Insert on delivery" in n]
            await session.execute(
                text("UPDATE campaign SET status = 'running' WHERE id = :id"), {"id": campaign_id}
            )
            notices.clear()
            await ledger.claim(
                session,
                campaign_id=campaign_id,
                limit=500,
                lease_token=uuid.uuid4(),
                lease_until=utcnow(),
                now=utcnow(),
            )
            claim = [n for n in notices if "Update on delivery" in n]
        await transaction.rollback()
        # The settings above stay with the connection: never hand it back to the pool.
        await conn.invalidate()
    return (
        f"release chunk of {count:,} rows (audience {size:,}):\n"
        + "\n".join(release)
        + "\n\nclaim of 500 rows:\n"
        + "\n".join(claim)
    )


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def run(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    waves = [Decimal(p) for p in args.waves.split(",")]
    load_before = os.getloadavg()
    print(
        f"  commit {_commit()}, {args.devices:,} devices, waves {args.waves} %, "
        f"load average {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}",
        file=sys.stderr,
    )
    runtime = await Runtime.start(settings)
    work = Path(tempfile.mkdtemp(prefix="wavecast-scale-"))
    try:
        imported = min(args.import_devices, args.devices)
        import_rate = fill_rate = 0.0
        if args.reuse_devices and await _reuse(runtime, args.devices):
            imported = 0
            print(f"  reusing the {args.devices:,} devices already there", file=sys.stderr)
        else:
            await _reset(runtime)
            print(f"  importing {imported:,} devices", file=sys.stderr)
            import_rate = await _import(runtime, imported) if imported else 0.0
            fill_rate = await _fill(runtime, imported + 1, args.devices)
        log = work / "worker.log"
        process = _worker(settings, log)
        try:
            worker = psutil.Process(process.pid)
            await asyncio.sleep(3)  # imports and start-up, so "start" is a running worker
            campaign_id = await _start_campaign(runtime, settings, waves)
            timeout = args.timeout or max(900.0, args.devices / 1000)
            memory, finished = await _watch(
                runtime, campaign_id, worker, time.monotonic() + timeout, args.first_sends
            )
            load_at_end = os.getloadavg()
        finally:
            process.terminate()
            try:
                # SIGTERM lets send jobs drain (at most pump_timeout) before the worker exits.
                process.wait(timeout=pump_timeout(settings) + 5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        rows = await _waves(runtime, campaign_id)
        logged = _released_log_times(log)
        stages = _job_stages(log)
        plans = await explain(runtime, campaign_id) if args.explain else ""
    finally:
        await runtime.close()
    if plans:
        print(plans)
    print(f"  worker RSS along the run: {memory.timeline()}", file=sys.stderr)
    sent_rows = [r for r in rows if r["first_sent"] is not None]
    first_sends = [(r["first_sent"] - r["released_at"]).total_seconds() for r in sent_rows]
    # The log line follows the wave's first chunk (its count, the audience read in order,
    # the insert), so this is the rate of one release transaction.
    planning = [
        min(r["rows"], engine.RELEASE_CHUNK_ROWS)
        / max(1e-3, (logged[r["wave"]] - r["released_at"]).total_seconds())
        for r in rows
        if r["wave"] in logged
    ]
    sent = sum(r["sent"] for r in rows)
    sending = max(r["last_sent"] for r in sent_rows) - min(r["first_sent"] for r in sent_rows)
    audience = f"{args.devices:,} devices"
    finish = (
        f"first {args.first_sends} waves sent within {timeout:,.0f} s (stopped there)"
        if args.first_sends
        else f"campaign finished within {timeout:,.0f} s"
    )
    figures = [Figure(SCENARIO, finish, float(finished), "", "= 1", finished)]
    if imported:
        figures += [
            at_least(
                SCENARIO,
                f"import rate ({imported:,} via the importer)",
                import_rate,
                "devices/s",
                IMPORT_TARGET_PER_SECOND,
            ),
            reported(
                SCENARIO, "fill rate (generate_series, not an import)", fill_rate, "devices/s"
            ),
        ]
    for r, seconds in zip(sent_rows, first_sends, strict=True):
        figures.append(
            at_most(
                SCENARIO,
                f"wave {r['wave'] + 1} ({r['rows']:,} rows): release -> first send",
                seconds,
                "s",
                FIRST_SEND_TARGET_SECONDS,
            )
        )
    if planning:
        figures.append(
            reported(
                SCENARIO,
                f"wave planning, first chunk of the last wave ({audience})",
                planning[-1],
                "rows/s",
            )
        )
    figures += [
        reported(
            SCENARIO,
            f"ledger rows sent ({sent:,}, sandbox provider)",
            sent / max(1e-3, sending.total_seconds()),
            "rows/s",
        ),
        reported(
            SCENARIO,
            f"claim, mean per batch ({stages.batches:,} batches, {stages.sent:,} sent)",
            stages.per_batch_ms("claim"),
            "ms",
        ),
        reported(SCENARIO, "record, mean per batch", stages.per_batch_ms("record"), "ms"),
        reported(SCENARIO, "worker RSS at start", memory.samples[0][1], "MB"),
        reported(SCENARIO, "worker RSS at middle", memory.at(0.5), "MB"),
        reported(SCENARIO, "worker RSS at end", memory.samples[-1][1], "MB"),
        at_most(SCENARIO, "worker peak RSS", memory.peak, "MB", RSS_TARGET_MB),
        reported(SCENARIO, "worker RSS growth, middle -> end", memory.second_half_growth, "MB"),
        reported(
            SCENARIO,
            "worker RSS samples (median)",
            statistics.median(mb for _, mb in memory.samples),
            "MB",
        ),
        reported(SCENARIO, "load average (1 min) at the start", load_before[0], ""),
        reported(SCENARIO, "load average (1 min) when the campaign ended", load_at_end[0], ""),
        reported(SCENARIO, "load average (15 min) when the campaign ended", load_at_end[2], ""),
    ]
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=1_000_000, help="audience size")
    parser.add_argument(
        "--import-devices",
        type=int,
        default=100_000,
        help="how many of them go through the importer (the rest: generate_series)",
    )
    parser.add_argument("--waves", default="1,5,25", help="cumulative wave percents")
    parser.add_argument(
        "--timeout",
        type=float,
        default=0,
        help="seconds for the campaign (default: 900, or 1 s per 1,000 devices if longer)",
    )
    parser.add_argument("--explain", action="store_true", help="print the release/claim plans")
    parser.add_argument(
        "--reuse-devices",
        action="store_true",
        help="keep the devices of an earlier run if there are exactly --devices (no import)",
    )
    parser.add_argument(
        "--first-sends",
        type=int,
        default=0,
        help="stop once this many waves have sent their first row (0: run the campaign out)",
    )


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    return asyncio.run(run(settings, args))
