"""Bare client-library send loops against a fake: the baseline Wavecast's benchmark divides by.

``python -m wavecast_tools.fakes.bareloop fcm --messages 20000`` starts the FCM fake as a
separate process
(as a benchmark must: in-process it would share the client's core and GIL), then drives
``messaging.send_each_async`` in batches of 500, back to back. ``apns`` drives
``aioapns.APNs.send_notification`` with ``--concurrency`` requests in flight. Both print one JSON
line: messages/s, and the CPU (in cores) the client and the fake used while sending, so one can
see which side was the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from wavecast_tools.fakes.apns_validation import make_device_token
from wavecast_tools.fakes.clients import (
    apns_client_for,
    close_firebase_app,
    firebase_app_for,
    refresh_access_token,
)


@dataclass(frozen=True, slots=True)
class LoopResult:
    provider: str
    messages: int
    succeeded: int
    seconds: float
    messages_per_second: float
    client_cores: float
    fake_cores: float
    fake_recording: str
    transport: str


class FakeProcess:
    """A fake started with its CLI; ``info`` is its startup JSON."""

    def __init__(self, module: str, args: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{module} exited with {self.proc.wait(5)} before starting")
        self.info: dict[str, Any] = json.loads(line)
        self.ps = psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


async def _measure(
    fake: FakeProcess, run: Callable[[], Awaitable[int]]
) -> tuple[int, float, float, float]:
    fake_before, client_before = fake.cpu_seconds(), time.process_time()
    started = time.perf_counter()
    succeeded = await run()
    seconds = time.perf_counter() - started
    fake_cpu = fake.cpu_seconds() - fake_before
    client_cpu = time.process_time() - client_before
    return succeeded, seconds, client_cpu / seconds, fake_cpu / seconds


async def fcm_loop(messages: int, *, tls: bool, recording: str, workdir: Path) -> LoopResult:
    from firebase_admin import messaging

    args = ["--port", "0", "--recording", recording, "--cert-dir", str(workdir / "tls")]
    args += ["--service-account", str(workdir / "sa.json")]
    fake = FakeProcess("wavecast_tools.fakes.fcm", [*args, "--tls" if tls else "--no-tls"])
    try:
        if tls:  # read once, when firebase-admin builds its httpx transport
            os.environ["SSL_CERT_FILE"] = fake.info["ca_file"]
        app = firebase_app_for(workdir / "sa.json", fake.info["url"], name="bareloop")
        await refresh_access_token(app)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Message.token -> fid
            batch = [
                messaging.Message(
                    token=f"bareloop-token-{i:06d}",
                    notification=messaging.Notification(title="Bare loop", body="ęśąćż"),
                    data={"campaign": "bareloop"},
                )
                for i in range(500)
            ]
        await messaging.send_each_async(batch[:50], app=app)  # connect before timing

        async def run() -> int:
            sent = ok = 0
            while sent < messages:
                chunk = batch[: min(500, messages - sent)]
                ok += (await messaging.send_each_async(chunk, app=app)).success_count
                sent += len(chunk)
            return ok

        succeeded, seconds, client, fake_cores = await _measure(fake, run)
        await close_firebase_app(app)
    finally:
        fake.stop()
    return LoopResult(
        provider="fcm",
        messages=messages,
        succeeded=succeeded,
        seconds=seconds,
        messages_per_second=messages / seconds,
        client_cores=client,
        fake_cores=fake_cores,
        fake_recording=recording,
        transport="https h2" if tls else "http/1.1",
    )


async def apns_loop(
    messages: int, *, concurrency: int, recording: str, workdir: Path
) -> LoopResult:
    from aioapns import NotificationRequest, PushType

    args = ["--port", "0", "--recording", recording, "--cert-dir", str(workdir / "tls")]
    args += ["--key-file", str(workdir / "AuthKey.p8"), "--topic", "com.example.bareloop"]
    fake = FakeProcess("wavecast_tools.fakes.apns", args)
    try:
        info = fake.info
        client = apns_client_for(
            info["url"],
            key_pem=await asyncio.to_thread(Path(info["key_file"]).read_text),
            key_id=info["key_id"],
            team_id=info["team_id"],
            topic="com.example.bareloop",
            ca_file=Path(info["ca_file"]),
            use_sandbox=info["environment"] == "sandbox",
        )
        payload = {"aps": {"alert": {"title": "Bare loop", "body": "ęśąćż"}}}
        tokens = [make_device_token("sandbox", i) for i in range(messages)]
        await client.send_notification(
            NotificationRequest(tokens[0], payload, push_type=PushType.ALERT)
        )
        gate = asyncio.Semaphore(concurrency)

        async def one(token: str) -> bool:
            async with gate:
                request = NotificationRequest(token, payload, push_type=PushType.ALERT)
                return bool((await client.send_notification(request)).is_successful)

        async def run() -> int:
            return sum(await asyncio.gather(*(one(t) for t in tokens)))

        succeeded, seconds, client_cores, fake_cores = await _measure(fake, run)
        client.pool.close()
    finally:
        fake.stop()
    return LoopResult(
        provider="apns",
        messages=messages,
        succeeded=succeeded,
        seconds=seconds,
        messages_per_second=messages / seconds,
        client_cores=client_cores,
        fake_cores=fake_cores,
        fake_recording=recording,
        transport="https h2",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wavecast_tools.fakes.bareloop", description=__doc__
    )
    parser.add_argument("provider", choices=("fcm", "apns"))
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2000, help="APNs requests in flight")
    parser.add_argument("--no-tls", action="store_true", help="FCM over plain http (HTTP/1.1)")
    parser.add_argument("--recording", choices=("full", "light", "off"), default="full")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wavecast-bareloop-") as tmp:
        workdir = Path(tmp)
        if args.provider == "fcm":
            coro = fcm_loop(
                args.messages, tls=not args.no_tls, recording=args.recording, workdir=workdir
            )
        else:
            coro = apns_loop(
                args.messages,
                concurrency=args.concurrency,
                recording=args.recording,
                workdir=workdir,
            )
        result = asyncio.run(coro)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
