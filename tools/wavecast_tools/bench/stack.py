"""The processes the throttle, kill and API benchmarks run against, and their set-up.

Everything here is a real process started the way an operator starts it: the FCM protocol
fake (`wavecast fake fcm`), `wavecast worker` and `wavecast api`. The benchmark itself only
prepares data (devices, campaigns, keys) through the services and reads the fake's records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from redis.asyncio import Redis
from sqlalchemy import text

from app.auth import service as auth_service
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.campaigns import service as campaigns
from app.campaigns.models import Campaign
from app.campaigns.schemas import CampaignCreate
from app.control.plane import Control
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.devices import service as devices_service
from app.devices.schemas import DeviceRegistration
from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools.bench.timing import Request

LIVE_CONTENT = {"title": "Your statement is ready", "body": "Log in to see it."}


TOPIC = "com.example.wavecast"


@dataclass(frozen=True, slots=True)
class Fake:
    kind: str
    url: str
    pid: int
    env: dict[str, str]
    """What a worker needs to send to this fake through the real provider."""
    platform: str
    """Devices of this platform are routed to this fake."""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def add_rule(self, **rule: Any) -> str:
        with self.client() as client:
            answer = client.post("/_fake/rules", json=rule)
            answer.raise_for_status()
            rule_id: str = answer.json()["rules"][0]["id"]
            return rule_id

    def clear_rules(self) -> None:
        with self.client() as client:
            client.delete("/_fake/rules").raise_for_status()

    def last_seq(self) -> int:
        with self.client() as client:
            answer = client.get("/_fake/stats")
            answer.raise_for_status()
            seq: int = answer.json()["last_seq"]
            return seq

    def forget_records(self) -> None:
        """Drop the records kept so far (a long run's records would grow the fake's heap,
        and its garbage collector's work, from one measurement to the next)."""
        with self.client() as client:
            client.delete("/_fake/records").raise_for_status()

    def rules(self) -> list[dict[str, Any]]:
        """The rules in force, each with how often it fired (``applied``)."""
        with self.client() as client:
            answer = client.get("/_fake/rules")
            answer.raise_for_status()
            rules: list[dict[str, Any]] = answer.json()["rules"]
            return rules

    def records(self, since: int = 0) -> list[dict[str, Any]]:
        """Provider pushes recorded after ``since``, as the fake keeps them."""
        with self.client() as client:
            answer = client.get("/_fake/records", params={"since": since, "endpoint": "send"})
            answer.raise_for_status()
            records: list[dict[str, Any]] = answer.json()["records"]
            return records

    def sends(self, since: int = 0, sources: Mapping[int, int] | None = None) -> list[Request]:
        """`records` as the timing module reads them; ``sources`` (client port → process
        number, `client_ports`) names their senders."""
        return [request_of(record, sources) for record in self.records(since)]


def client_ports(procs: Sequence[subprocess.Popen[bytes]], server_port: int) -> dict[int, int]:
    """Local port → index in ``procs`` of each TCP connection those processes hold to
    ``server_port`` on this machine now (connections open and close: ask more than once)."""
    ports: dict[int, int] = {}
    for index, proc in enumerate(procs):
        try:
            connections = psutil.Process(proc.pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        for connection in connections:
            if connection.raddr and connection.raddr.port == server_port:
                ports[connection.laddr.port] = index
    return ports


def request_of(record: dict[str, Any], sources: Mapping[int, int] | None = None) -> Request:
    """One fake record (``GET /_fake/records``) as a timing Request. Light recording keeps no
    response headers, so Retry-After is read from the rule that answered, when one did."""
    start = float(record["monotonic"])
    headers = record.get("response_headers") or {}
    retry_after = headers.get("retry-after")
    answered = record.get("answered")
    port = record.get("peer_port")
    return Request(
        start=start,
        # When the answer was written; a request never answered (a fault) ends when its
        # delay says it would have.
        end=float(answered) if answered is not None else start + float(record["delay"]),
        status=int(record["status"]),
        retry_after=float(retry_after) if retry_after is not None else None,
        source=sources.get(port) if sources and port is not None else None,
    )


@contextmanager
def fake(kind: str, work: Path, *, recording: str = "full", tls: bool = False) -> Iterator[Fake]:
    """`wavecast fake fcm|apns` in its own process, recording every request (full records
    by default: the Retry-After a 429 carried is read from them; `light` keeps who, when and
    which answer, for throughput runs). FCM with `tls`: HTTP/2 over TLS, as Google serves
    it (the APNs fake always is); clients then trust the fake's CA through `env`."""
    ready = work / f"{kind}-ready.json"
    if kind == "fcm":
        account = work / "service-account.json"
        options = ["--service-account", str(account)]
        if tls:
            options += ["--tls", "--cert-dir", str(work / "tls"), "--plain-port", "0"]
    else:
        options = [
            "--environment",
            "production",
            "--lenient-environment",
            "--cert-dir",
            str(work / "tls"),
            "--key-file",
            str(work / "AuthKey.p8"),
            "--plain-port",
            "0",
        ]
    log = (work / f"{kind}-fake.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "fake",
            kind,
            "--port",
            "0",
            "--recording",
            recording,
            "--ready-file",
            str(ready),
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        _wait_for(lambda: ready.exists(), process, f"the {kind} fake", within=60)
        info = json.loads(ready.read_text())
        if kind == "fcm":
            trust = (
                {"SSL_CERT_FILE": info["ca_file"], "REQUESTS_CA_BUNDLE": info["ca_file"]}
                if info.get("ca_file")
                else {}
            )
            yield Fake(
                kind,
                info.get("plain_url") or info["url"],
                process.pid,
                {
                    "WAVECAST_PROVIDER": "real",
                    "WAVECAST_FCM_CREDENTIALS": str(account),
                    "WAVECAST_FCM_ENDPOINT": info["url"],
                    **trust,
                },
                "android",
            )
        else:
            yield Fake(
                kind,
                # Introspection over the plaintext side listener: same records and rules.
                info["plain_url"] or info["url"],
                process.pid,
                {
                    "WAVECAST_PROVIDER": "real",
                    "WAVECAST_APNS_KEY": info["key_file"],
                    "WAVECAST_APNS_KEY_ID": info["key_id"],
                    "WAVECAST_APNS_TEAM_ID": info["team_id"],
                    "WAVECAST_APNS_TOPIC": TOPIC,
                    "WAVECAST_APNS_PRODUCTION_URL": info["url"],
                    "WAVECAST_APNS_CA_FILE": info["ca_file"],
                },
                "ios",
            )
    finally:
        _stop([process])
        log.close()


def base_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "WAVECAST_DATABASE_URL": settings.effective_database_url,
        "WAVECAST_REDIS_URL": settings.redis_url,
        "WAVECAST_KEY_PEPPER": settings.key_pepper.get_secret_value(),
        "WAVECAST_JSON_LOGS": "false",
        "WAVECAST_LOG_LEVEL": "WARNING",
        # Several workers share this machine: their metrics endpoints would want one port.
        "WAVECAST_WORKER_METRICS_PORT": "0",
    }
    env.update(extra)
    return env


@contextmanager
def workers(
    settings: Settings, count: int, work: Path, **extra: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` real `wavecast worker` processes; logs in `work` (`worker-N.log`)."""
    with ExitStack() as files:
        logs = [files.enter_context((work / f"worker-{i}.log").open("wb")) for i in range(count)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker"],
                env=base_env(settings, **extra),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            for log in logs
        ]
        try:
            yield procs
        finally:
            _stop(procs)


@contextmanager
def api_process(settings: Settings, work: Path, *, processes: int = 1) -> Iterator[str]:
    """`wavecast api` (uvicorn) on a free port; yields its base URL once `/healthz` answers.

    `WAVECAST_API_RATE_LIMIT=0`: a per-key rate limit would measure the limiter, not the API."""
    port = _free_port()
    log = (work / "api.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(processes),
        ],
        env=base_env(settings, WAVECAST_API_RATE_LIMIT="0"),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_for(healthy, process, "the API", within=90)
        yield url
    finally:
        _stop([process])
        log.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(ready: Any, process: subprocess.Popen[bytes], what: str, *, within: float) -> None:
    deadline = time.monotonic() + within
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready within {within:.0f}s")
        time.sleep(0.05)


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def workdir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"wavecast-bench-{name}-"))


# ------------------------------------------------------------------ data


async def empty_stores(runtime: Runtime, *, devices: bool = True) -> None:
    """Forget earlier runs: campaigns, deliveries, devices (unless told otherwise), the kill
    switch (left engaged, it would stop every campaign; a missing row reads as released), and
    every key in the benchmark's Redis database (stale worker heartbeats would shrink each
    worker's share of send jobs)."""
    tables = ["delivery", "campaign_wave", "campaign", "kill_switch"]
    tables += ["device"] if devices else []
    async with runtime.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))
    await runtime.redis.flushdb()


async def add_devices(runtime: Runtime, count: int, *, tag: str, platform: str) -> None:
    """`count` active devices tagged `tag`: Android (FCM) or production iOS (APNs).

    Marked as test devices: the benchmark's workers run outside production with the real
    provider (pointed at the fakes), where a campaign reaches test devices only."""
    now = utcnow()
    ios = platform == "ios"
    rows = [
        devices_service.registration_row(
            DeviceRegistration(
                token=uuid.uuid4().hex * 2 if ios else f"{tag}-{uuid.uuid4().hex}",
                platform="ios" if ios else "android",
                apns_environment="production" if ios else None,
                tags=[tag],
            ),
            now,
        )
        for _ in range(count)
    ]
    for row in rows:
        row["is_test_device"] = True
    for start in range(0, len(rows), 10_000):
        async with unit_of_work(runtime.sessionmaker) as session:
            await devices_service.register_many(session, rows[start : start + 10_000])


async def start_campaign(
    runtime: Runtime,
    *,
    tag: str,
    per_second: int,
    rollout: dict[str, Any] | None = None,
    max_opens_per_second: int | None = None,
) -> uuid.UUID:
    """A live campaign to the devices tagged `tag` (one wave unless `rollout` says
    otherwise), started; the workers' next tick plans its wave and sends it."""
    throttle: dict[str, Any] = {"per_second": per_second}
    if max_opens_per_second is not None:
        throttle["max_opens_per_second"] = max_opens_per_second
    body = CampaignCreate.model_validate(
        {
            "name": f"bench {tag}",
            "kind": "live",
            "content": LIVE_CONTENT,
            "audience": {"rules": {"field": "tags", "op": "contains", "value": tag}},
            "rollout": rollout or {"waves": [{"percent": 100}]},
            "throttle": throttle,
        }
    )
    async with unit_of_work(runtime.sessionmaker) as session:
        campaign = await campaigns.create(session, runtime.settings, SYSTEM, body)
        campaign = await campaigns.start(
            session, runtime.settings, SYSTEM, campaign.id, override_reason=None, reason="bench"
        )
    await Control(runtime.redis).publish_campaign(campaign)
    return campaign.id


async def campaign_status(runtime: Runtime, campaign_id: uuid.UUID) -> str:
    async with runtime.sessionmaker() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        return str(campaign.status)


async def api_key(runtime: Runtime, scopes: Sequence[Scope]) -> str:
    async with unit_of_work(runtime.sessionmaker) as session:
        created = await auth_service.create_key(
            session, runtime.settings, SYSTEM, name=f"bench-{uuid.uuid4().hex[:6]}", scopes=scopes
        )
    return created.raw


async def workers_alive(redis: Redis, count: int, *, within: float = 120) -> None:
    import asyncio

    deadline = time.monotonic() + within
    while len(await redis.keys("wavecast:worker:*")) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not start within {within:.0f}s")
        await asyncio.sleep(0.1)


def send_jobs(log: Path) -> Iterator[dict[str, Any]]:
    """The "send job finished" lines of a worker's JSON log (`workers.jobs.send_campaign`),
    each as its record; other lines, and lines that are not JSON, are skipped."""
    for line in log.read_text(errors="replace").splitlines():
        if '"send job finished"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("message") == "send job finished":
            yield entry
