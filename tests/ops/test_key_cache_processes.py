"""Revocation across API processes: two real `wavecast api` processes remember a key; it is
revoked through one; the other refuses every request that starts
`WAVECAST_KEY_REVOCATION_SECONDS` after the revocation was answered (the bound), and the
revoking one refuses at once. With the announcement through Redis, the other refuses at once
too, long before the bound."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from app.auth.models import Scope
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import wait_for, worker_env

BOUND = 1.0


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def api_processes(runtime: Runtime, count: int, bound: float = BOUND) -> Iterator[list[str]]:
    with ExitStack() as stack:
        urls, procs = [], []
        for _ in range(count):
            port = _port()
            log = stack.enter_context(tempfile.NamedTemporaryFile(prefix="api-", suffix=".log"))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "api", "--port", str(port)],
                    env=worker_env(runtime.settings, WAVECAST_KEY_REVOCATION_SECONDS=str(bound)),
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        try:
            yield urls
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.mark.slow
async def test_a_revoked_key_stops_working_in_every_process_within_the_bound(
    db: Runtime, make_key: KeyMaker
) -> None:
    admin = bearer(await make_key(Scope.admin, name="admin"))
    raw = await make_key(Scope.devices_read, name="phone app")
    with api_processes(db, 2) as (first, second):
        async with httpx.AsyncClient(timeout=10) as http:

            async def up(url: str) -> bool:
                try:
                    return (await http.get(f"{url}/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(lambda: up(first), within=90, interval=0.2)
            await wait_for(lambda: up(second), within=90, interval=0.2)
            # Both processes prove the key and remember it.
            for url in (first, second):
                for _ in range(3):
                    answer = await http.get(f"{url}/v1/devices", headers=bearer(raw))
                    assert answer.status_code == 200, answer.text
            keys = (await http.get(f"{first}/v1/keys", headers=admin)).json()
            key_id = next(k["id"] for k in keys if k["name"] == "phone app")
            revoked = await http.request(
                "DELETE", f"{first}/v1/keys/{key_id}", json={"reason": "leaked"}, headers=admin
            )
            assert revoked.status_code == 200, revoked.text
            answered = time.monotonic()
            assert (await http.get(f"{first}/v1/devices", headers=bearer(raw))).status_code == 401
            # The other process: every request is either inside the bound, or refused.
            seen: list[tuple[float, int]] = []
            while time.monotonic() < answered + BOUND + 1.0:
                started = time.monotonic() - answered
                status = (await http.get(f"{second}/v1/devices", headers=bearer(raw))).status_code
                seen.append((started, status))
                await asyncio.sleep(0.02)
    late = [(t, s) for t, s in seen if t >= BOUND]
    assert late and all(s == 401 for _, s in late), seen
    assert {s for _, s in seen} <= {200, 401}, seen


async def _up(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(f"{url}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
async def test_a_revocation_through_the_api_is_refused_at_once_by_every_process(
    db: Runtime, make_key: KeyMaker
) -> None:
    # A 60 s bound: only the announcement through Redis can explain an immediate refusal.
    admin = bearer(await make_key(Scope.admin, name="admin"))
    raws = [await make_key(Scope.devices_read, name=f"phone app {n}") for n in range(3)]
    with api_processes(db, 2, bound=60) as (first, second):
        async with httpx.AsyncClient(timeout=10) as http:
            await wait_for(lambda: _up(http, first), within=90, interval=0.2)
            await wait_for(lambda: _up(http, second), within=90, interval=0.2)
            keys = (await http.get(f"{first}/v1/keys", headers=admin)).json()
            # Quiet for longer than the Redis client's 5 s socket timeout: the listeners must
            # still be subscribed after it.
            await asyncio.sleep(6)
            for n, raw in enumerate(raws):
                for url in (first, second):  # both remember the key
                    for _ in range(3):
                        answer = await http.get(f"{url}/v1/devices", headers=bearer(raw))
                        assert answer.status_code == 200, answer.text
                key_id = next(k["id"] for k in keys if k["name"] == f"phone app {n}")
                revoked = await http.request(
                    "DELETE", f"{first}/v1/keys/{key_id}", json={"reason": "leaked"}, headers=admin
                )
                assert revoked.status_code == 200, revoked.text
                # The very next request, to the other process, is refused.
                refused = await http.get(f"{second}/v1/devices", headers=bearer(raw))
                assert refused.status_code == 401, (n, refused.text)
                assert (
                    await http.get(f"{first}/v1/devices", headers=bearer(raw))
                ).status_code == 401
            # Keys not revoked still work in both.
            for url in (first, second):
                assert (await http.get(f"{url}/v1/keys", headers=admin)).status_code == 200
