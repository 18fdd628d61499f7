"""The `wavecast` command, run as a user runs it: a real process on a fresh data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def wavecast(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WAVECAST_DATA_DIR": str(data_dir),
        "WAVECAST_JSON_LOGS": "false",
        "WAVECAST_WORKER_METRICS_PORT": "0",
    }
    for name in ("WAVECAST_DATABASE_URL", "WAVECAST_REDIS_URL", "WAVECAST_ENV"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def test_migrate_keys_import_and_seed_on_an_empty_sqlite(tmp_path: Path) -> None:
    assert "database at head" in wavecast(tmp_path, "migrate", "--check").stdout

    person = json.loads(
        wavecast(tmp_path, "people", "create", "--name", "CRM", "--kind", "service").stdout
    )
    created = json.loads(
        wavecast(
            tmp_path,
            "keys",
            "create",
            "--name",
            "crm",
            "--person",
            "CRM",
            "--scope",
            "devices:write",
        ).stdout
    )
    assert created["person_id"] == person["id"]
    assert created["key"].startswith("wck_")
    assert created["scopes"] == ["devices:write"]
    listed = wavecast(tmp_path, "keys", "list").stdout
    assert "crm" in listed and created["key"] not in listed
    wavecast(tmp_path, "keys", "revoke", created["id"], "--reason", "rotated")
    assert "revoked" in wavecast(tmp_path, "keys", "list", "--all").stdout

    bad_scope = wavecast(
        tmp_path, "keys", "create", "--name", "x", "--person", "CRM", "--scope", "god", check=False
    )
    assert bad_scope.returncode != 0
    assert "scopes are" in bad_scope.stderr

    ndjson = tmp_path / "devices.ndjson"
    ndjson.write_text(
        '{"token": "a", "platform": "android"}\n'
        '{"token": "b", "platform": "bada"}\n'
        '{"token": "c", "platform": "ios", "apns_environment": "sandbox"}\n'
    )
    result = json.loads(wavecast(tmp_path, "devices", "import", str(ndjson)).stdout)
    assert result["created"] == 2
    assert result["rejected"][0]["line"] == 2

    assert "seeded 50 demo devices" in wavecast(tmp_path, "demo", "seed", "--devices", "50").stdout


def test_production_refuses_to_start_on_the_embedded_default(tmp_path: Path) -> None:
    env_run = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        env={**os.environ, "WAVECAST_ENV": "production", "WAVECAST_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert env_run.returncode != 0
    assert "refusing to start" in env_run.stderr
    assert "SQLite" in env_run.stderr


@pytest.mark.slow
def test_run_starts_everything_and_stops_cleanly(tmp_path: Path) -> None:
    port = 18000 + os.getpid() % 1000
    env = {
        **os.environ,
        "WAVECAST_DATA_DIR": str(tmp_path),
        "WAVECAST_JSON_LOGS": "false",
        "WAVECAST_WORKER_METRICS_PORT": "0",
    }
    for name in ("WAVECAST_DATABASE_URL", "WAVECAST_REDIS_URL", "WAVECAST_ENV"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--port", str(port), "--demo-devices", "100"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120  # a cold, loaded machine: imports and migrations
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "admin API key was created" in output
    assert "embedded Redis started" in output
    assert "embedded Redis stopped" in output


@pytest.mark.parametrize("kind", ["fcm", "apns"])
def test_fake_commands_start_and_describe_themselves(tmp_path: Path, kind: str) -> None:
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "fake",
            kind,
            "--port",
            "0",
            "--cert-dir",
            str(tmp_path / "tls"),
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert ready.exists(), process.stderr.read() if process.stderr else ""
        described = json.loads(ready.read_text())
        assert described["url"].startswith("http")
        assert described["port"] > 0
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
