"""The CLI answers a mistake with a usage line or one line naming it, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.settings import Settings
from tests.support import worker_env


def wavecast(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_demo_seed_refuses_a_production_deployment(settings: Settings, tmp_path: Path) -> None:
    # A production configuration that passes the settings' own checks on any test database
    # (SQLite included): the refusal must come from `demo seed` itself, before it connects.
    production = worker_env(
        settings,
        WAVECAST_ENV="production",
        WAVECAST_PROVIDER="real",
        WAVECAST_FCM_CREDENTIALS=str(tmp_path / "service-account.json"),
        WAVECAST_DATABASE_URL="postgresql://wavecast@127.0.0.1:9/unreachable",
        WAVECAST_REDIS_URL="redis://127.0.0.1:9/0",
        WAVECAST_KEY_PEPPER="pepper",
    )
    answer = wavecast(production, "demo", "seed", "--devices", "5")
    assert answer.returncode == 1, answer.stdout + answer.stderr
    lines = answer.stderr.strip().splitlines()
    assert len(lines) == 1, answer.stderr
    assert "WAVECAST_ENV=production" in lines[0] and "demo seed" in lines[0]
    assert "seeded" not in answer.stdout


def test_fake_help_answers_with_its_usage(settings: Settings) -> None:
    answer = wavecast(worker_env(settings), "fake", "--help")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.startswith("usage: wavecast fake")
    assert "fcm" in answer.stdout and "apns" in answer.stdout
    assert "Traceback" not in answer.stderr


def test_importing_a_missing_file_is_one_line(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "devices.ndjson"
    answer = wavecast(worker_env(settings), "devices", "import", str(missing))
    assert answer.returncode == 1
    lines = answer.stderr.strip().splitlines()
    assert lines == [f"wavecast devices import: no such file: {missing}"], answer.stderr
