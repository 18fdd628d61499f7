"""Secrets never leak: API keys, the service-account private key and the APNs .p8 key appear
in no log line (JSON logs, everything down to DEBUG), no error body and no audit row, while
keys are created, used, misused and revoked, and while workers start with real-provider
settings (credentials that work against the project's fakes, missing files, broken files)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy import text
from wavecast_tools.fakes.apns import generate_apns_key
from wavecast_tools.fakes.fcm import write_service_account

from app.auth.models import Scope
from app.runtime import Runtime
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.support import worker_env


class Capture(logging.Handler):
    """Every record, formatted exactly as the service's JSON logs would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logs() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(level)


def pem_body_lines(pem: str) -> list[str]:
    """The key material of a PEM block: its base64 lines (headers are not secret)."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def assert_absent(secrets: list[str], where: str, text_: str) -> None:
    for secret in secrets:
        assert secret not in text_, f"a secret appears in {where}"


async def test_api_keys_never_appear_in_logs_errors_or_the_audit_log(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
    logs: Capture,
) -> None:
    admin_raw = await make_key(Scope.admin)
    admin = bearer(admin_raw)
    person = str(await make_person("crm", kind="service"))
    created = await client.post(
        "/v1/keys",
        json={"name": "crm", "scopes": ["campaigns:read"], "person_id": person},
        headers=admin,
    )
    raw = created.json()["key"]  # the one answer allowed to carry it
    prefix, secret = raw.split("_", 2)[1:]
    others: list[httpx.Response] = [
        await client.get("/v1/keys", headers=admin),
        await client.get("/v1/devices", headers=bearer(raw)),
        await client.get("/v1/devices", headers=bearer(raw[:-3] + "abc")),
        await client.get("/v1/devices", headers={"Authorization": f"Basic {raw}"}),
        await client.get("/v1/devices", headers=bearer(f"{raw}{raw}")),
        await client.post("/v1/keys", json={"name": raw, "scopes": ["nope"]}, headers=admin),
        await client.post("/v1/keys", content=f'{{"name": "{secret}"', headers=admin),
        await client.request(
            "DELETE",
            f"/v1/keys/{created.json()['id']}",
            json={"reason": "rotated"},
            headers=admin,
        ),
        await client.get("/v1/devices", headers=bearer(raw)),  # revoked now
        await client.get("/v1/audit?limit=100", headers=admin),
        await client.get("/metrics"),
    ]
    assert others[2].status_code == 401 and others[8].status_code == 401
    secrets = [raw, secret, admin_raw, admin_raw.split("_", 2)[2]]
    for answer in others:
        body = answer.text
        if answer.status_code == 422 and raw in body:
            # The client's own invalid input echoed back is not a leak, but say so plainly.
            pytest.fail("an error body echoes the submitted value")
        assert_absent(secrets, f"the answer to {answer.request.method} {answer.request.url}", body)
    assert_absent(secrets, "the logs", "\n".join(logs.lines))
    async with db.engine.connect() as conn:
        audit = repr((await conn.execute(text("SELECT * FROM audit_event"))).all())
        hashes = [r[0] for r in await conn.execute(text("SELECT key_hash FROM api_key"))]
    assert_absent([*secrets, *hashes], "the audit log", audit)
    assert prefix in audit  # the visible prefix is what the audit log names keys by


def run_worker(env: dict[str, str], log_file: Path) -> tuple[int, str]:
    """Start a worker; stop it once it says it started (or let it fail). Its whole output."""
    with log_file.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], env=env, stdout=out, stderr=out
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if '"worker started"' in log_file.read_text():
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.2)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(10)
    return code, log_file.read_text()


def broken_copy(directory: Path, account: Path, p8: Path) -> tuple[Path, Path]:
    """The same secrets in files the libraries cannot load: a service-account JSON with its
    private key cut short, and a .p8 whose PEM body is damaged."""
    info = json.loads(account.read_text())
    info["private_key"] = info["private_key"][: len(info["private_key"]) // 2]
    bad_account = directory / "broken-account.json"
    bad_account.write_text(json.dumps(info))
    lines = p8.read_text().splitlines()
    bad_p8 = directory / "broken.p8"
    bad_p8.write_text("\n".join([lines[0], lines[1][:-4] + "!!!!", *lines[2:]]))
    return bad_account, bad_p8


@pytest.mark.slow
async def test_workers_never_log_provider_private_keys(db: Runtime, tmp_path: Path) -> None:
    account = tmp_path / "service-account.json"
    write_service_account(
        account, project_id="wavecast-secrets", token_uri="http://127.0.0.1:9/token"
    )
    apns_key = generate_apns_key(tmp_path)
    assert apns_key.path is not None
    secrets = [
        *pem_body_lines(json.loads(account.read_text())["private_key"]),
        *pem_body_lines(apns_key.private_key_pem),
    ]
    bad_account, bad_p8 = broken_copy(tmp_path, account, apns_key.path)
    variants = {
        "working": (account, apns_key.path),
        "missing": (tmp_path / "absent.json", tmp_path / "absent.p8"),
        "broken": (bad_account, bad_p8),
    }
    outputs = {}
    for name, (fcm_file, p8_file) in variants.items():
        env = worker_env(
            db.settings,
            WAVECAST_PROVIDER="real",
            WAVECAST_FCM_CREDENTIALS=str(fcm_file),
            WAVECAST_FCM_ENDPOINT="http://127.0.0.1:9",
            WAVECAST_APNS_KEY=str(p8_file),
            WAVECAST_APNS_KEY_ID=apns_key.key_id,
            WAVECAST_APNS_TEAM_ID=apns_key.team_id,
            WAVECAST_APNS_TOPIC="com.example.wavecast",
            WAVECAST_APNS_PRODUCTION_URL="https://127.0.0.1:9",
            WAVECAST_JSON_LOGS="true",
            WAVECAST_LOG_LEVEL="DEBUG",
        )
        env.pop("PYTHONWARNINGS", None)
        outputs[name] = await asyncio.to_thread(run_worker, env, tmp_path / f"{name}.log")
    assert '"worker started"' in outputs["working"][1], outputs["working"][1][-2000:]
    for name in ("missing", "broken"):
        code, output = outputs[name]
        assert code != 0, name  # refuses to start, and says why
        assert '"worker started"' not in output, name
    for name, (_, output) in outputs.items():
        assert_absent(secrets, f"the {name} worker's output", output)
    assert os.environ.get("WAVECAST_FCM_CREDENTIALS") is None
