"""Workers: the send rate of one campaign with 1, 2 and 4 `wavecast worker` processes.

Each round empties the ledger and Redis, starts N real worker processes (sandbox provider:
each batch is recorded in PostgreSQL instead of going out), starts one unthrottled 100 %
wave to `--devices` devices, and waits until it completes. The rate is read off the ledger:
the rows sent between the 10th and the 90th percentile of their `sent_at`, over that time
(the wave's start, while its first chunks are planned, and its tail are left out). The
figure is the median of `--repeat` rounds for each N.

Where the time goes: CPU over each round, in cores (CPU seconds per wall second), of the
worker processes, of the PostgreSQL backends serving the benchmark's database, of the
redis-server on the benchmark's Redis port, and of the whole machine (other people's
processes included when it is shared). On a machine with C cores, a machine figure of C
means the cores were saturated, by whatever ran.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
from sqlalchemy import text

from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, median, reported

DESCRIPTION = "send rate of one campaign with 1, 2 and 4 worker processes (sandbox provider)"
SCENARIO = "workers"
UNTHROTTLED = 1_000_000
TAG = "bench-workers"
# The middle of a campaign's sends: its start (first chunks planned) and tail left out.
LOW, HIGH = 0.10, 0.90
CPU_GROUPS = ("workers", "postgres", "redis", "machine")


@dataclass
class Round:
    workers: int
    rate: float  # rows/s over the middle of the sends
    seconds: float  # start to completed
    cores: dict[str, float]  # CPU seconds per wall second, by group


Reading = tuple[float, dict[tuple[str, int], float]]


class Cpu:
    """CPU seconds, between two readings, of the worker processes; of the PostgreSQL
    backends serving the benchmark's database (not the server's background processes, nor
    other databases' backends: the server may be shared); of the redis-server listening on
    the benchmark's Redis port; and of the whole machine. A process that started between
    the readings counts whole."""

    def __init__(self, runtime: Runtime, worker_pids: list[int]) -> None:
        self._runtime = runtime
        self._workers = worker_pids
        self._redis = _listening(urlsplit(runtime.settings.redis_url).port or 6379)

    async def read(self) -> Reading:
        async with self._runtime.engine.connect() as conn:
            backends = (
                await conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            ).scalars()
            groups = [("postgres", int(pid)) for pid in backends]
        groups += [("workers", pid) for pid in self._workers]
        groups += [("redis", pid) for pid in self._redis]
        seconds: dict[tuple[str, int], float] = {}
        for group, pid in groups:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            seconds[(group, pid)] = times.user + times.system
        machine = psutil.cpu_times()
        seconds[("machine", 0)] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return time.monotonic(), seconds

    @staticmethod
    def cores(before: Reading, after: Reading) -> dict[str, float]:
        wall = max(1e-3, after[0] - before[0])
        totals = dict.fromkeys(CPU_GROUPS, 0.0)
        for key, spent in after[1].items():
            totals[key[0]] += spent - before[1].get(key, 0.0)
        return {group: total / wall for group, total in totals.items()}


def _listening(port: int) -> list[int]:
    """The pid of the redis-server listening on `port` on this machine (none if remote)."""
    for process in psutil.process_iter(["name"]):
        if not (process.info["name"] or "").startswith("redis"):
            continue
        try:
            sockets = process.net_connections(kind="inet")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in sockets):
            return [process.pid]
    return []


async def _reset(runtime: Runtime) -> None:
    if runtime.engine.dialect.name != "postgresql":
        raise RuntimeError("the workers benchmark runs on PostgreSQL: set WAVECAST_DATABASE_URL")
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text("TRUNCATE sandbox_message, delivery, campaign_wave, campaign, kill_switch CASCADE")
        )
    await runtime.redis.flushdb()


async def _middle_rate(runtime: Runtime, campaign_id: uuid.UUID) -> float:
    async with runtime.engine.connect() as conn:
        low, high, count = (
            await conn.execute(
                text(
                    "SELECT percentile_disc(CAST(:low AS float8)) WITHIN GROUP (ORDER BY sent_at),"
                    " percentile_disc(CAST(:high AS float8)) WITHIN GROUP (ORDER BY sent_at),"
                    " count(*)"
                    " FROM delivery WHERE campaign_id = :id AND status = 'sent'"
                ),
                {"id": campaign_id, "low": LOW, "high": HIGH},
            )
        ).one()
    if not count or high <= low:
        raise RuntimeError(f"the campaign sent {count} rows: no rate to read")
    rate: float = (HIGH - LOW) * count / (high - low).total_seconds()
    return rate


async def _round(runtime: Runtime, settings: Settings, count: int, within: float) -> Round:
    await _reset(runtime)
    work = stack.workdir("workers")
    env = {
        "WAVECAST_PROVIDER": "sandbox",
        # The provider caps would be what this measures, not the workers.
        "WAVECAST_FCM_MAX_PER_SECOND": str(UNTHROTTLED),
        "WAVECAST_APNS_MAX_PER_SECOND": str(UNTHROTTLED),
    }
    with stack.workers(settings, count, work, **env) as procs:
        await stack.workers_alive(runtime.redis, count)
        cpu = Cpu(runtime, [p.pid for p in procs])
        before = await cpu.read()
        started = time.monotonic()
        campaign_id = await stack.start_campaign(runtime, tag=TAG, per_second=UNTHROTTLED)
        while (status := await stack.campaign_status(runtime, campaign_id)) != "completed":
            if status != "running":
                raise RuntimeError(f"the benchmark campaign is {status}, not completed")
            if time.monotonic() - started > within:
                raise RuntimeError(f"the campaign did not complete within {within:.0f}s")
            await asyncio.sleep(0.2)
        seconds = time.monotonic() - started
        cores = Cpu.cores(before, await cpu.read())
    return Round(count, await _middle_rate(runtime, campaign_id), seconds, cores)


async def run(settings: Settings, args: argparse.Namespace) -> list[Round]:
    counts = [int(n) for n in args.workers.split(",")]
    runtime = await Runtime.start(settings)
    rounds: list[Round] = []
    try:
        await stack.empty_stores(runtime)
        await stack.add_devices(runtime, args.devices, tag=TAG, platform="android")
        async with runtime.engine.begin() as conn:
            await conn.execute(text("ANALYZE device"))
        for repeat in range(args.repeat):
            # The order rotates, so a drift of the shared machine's load favours no count.
            shift = repeat % len(counts)
            for n in counts[shift:] + counts[:shift]:
                result = await _round(runtime, settings, n, args.timeout)
                rounds.append(result)
                load = os.getloadavg()[0]
                used = ", ".join(f"{g} {c:.2f}" for g, c in result.cores.items())
                print(
                    f"  {n} worker(s): {result.rate:,.0f} rows/s, {result.seconds:.1f} s; "
                    f"cores: {used}; load {load:.2f}",
                    flush=True,
                )
    finally:
        await runtime.close()
    return rounds


def figures(rounds: list[Round], devices: int) -> list[Figure]:
    out: list[Figure] = []
    counts = sorted({r.workers for r in rounds})
    base: float | None = None
    for n in counts:
        mine = [r for r in rounds if r.workers == n]
        rate = median(r.rate for r in mine)
        base = base or rate
        label = f"{n} worker{'s' if n > 1 else ''}"
        out.append(
            reported(SCENARIO, f"{label}: send rate ({devices:,} devices, median)", rate, "rows/s")
        )
        out.append(reported(SCENARIO, f"{label}: rate / 1 worker's", rate / base, "x"))
        for group in CPU_GROUPS:
            out.append(
                reported(
                    SCENARIO,
                    f"{label}: CPU of {group}",
                    median(r.cores[group] for r in mine),
                    "cores",
                )
            )
    out.append(reported(SCENARIO, "cores on this machine", float(psutil.cpu_count() or 0), ""))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--devices", type=int, default=100_000, help="the campaign's audience")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per count (medians)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per campaign")


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    return figures(asyncio.run(run(settings, args)), args.devices)
