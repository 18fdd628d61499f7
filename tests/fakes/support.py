"""Helpers shared by the fake tests (plain functions; fixtures live in each test module)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` until it holds; fail the test after five seconds."""
    deadline = time.monotonic() + 5.0
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def raw_client(ca_file: Path | None = None, *, http2: bool = True) -> httpx.AsyncClient:
    """A bare httpx client, for requests the real provider libraries cannot be made to send."""
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
    )
    return httpx.AsyncClient(http2=http2, verify=verify, timeout=10)


class FakeProcess:
    """A fake started through its command line, as a benchmark would run it."""

    def __init__(self, module: str, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            raise RuntimeError(f"{module} exited with {self.proc.returncode} before starting")
        self.info: dict[str, Any] = json.loads(line)

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
