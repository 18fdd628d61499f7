from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Environment, ProviderMode, Settings

PG = "postgresql://u@db/wavecast"
REDIS = "redis://redis:6379/0"


def test_defaults_are_the_embedded_development_setup() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.env is Environment.development
    assert s.uses_embedded_database and s.uses_embedded_redis
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert s.provider is ProviderMode.sandbox


def test_env_prefix_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVECAST_DATABASE_URL", PG)
    monkeypatch.setenv("WAVECAST_ENV", "staging")
    s = Settings()
    assert s.env is Environment.staging
    assert s.effective_database_url == "postgresql+asyncpg://u@db/wavecast"


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"database_url": "", "redis_url": REDIS, "provider": "real"}, "SQLite"),
        ({"database_url": "sqlite:///x.db", "redis_url": REDIS, "provider": "real"}, "SQLite"),
        ({"database_url": PG, "redis_url": "", "provider": "real"}, "embedded Redis"),
        ({"database_url": PG, "redis_url": REDIS, "provider": "sandbox"}, "sandbox provider"),
        ({"database_url": PG, "redis_url": REDIS, "provider": "real", "key_pepper": ""}, "PEPPER"),
    ],
)
def test_production_refuses_unsafe_configuration(overrides: dict[str, str], complaint: str) -> None:
    values = {"env": "production", "key_pepper": "p", **overrides}
    with pytest.raises(ValidationError, match=complaint):
        Settings(**values)  # type: ignore[arg-type]


def test_production_accepts_a_safe_configuration(tmp_path: Path) -> None:
    account = tmp_path / "sa.json"
    account.write_text('{"type": "service_account", "project_id": "bank-prod"}')
    s = Settings(
        env="production",  # type: ignore[arg-type]
        database_url=PG,
        redis_url=REDIS,
        provider="real",  # type: ignore[arg-type]
        key_pepper="pepper",  # type: ignore[arg-type]
        fcm_credentials=account,
        production_fcm_projects=["bank-prod"],
    )
    assert s.is_production


def test_unknown_database_is_refused() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL or SQLite"):
        Settings(database_url="mysql://u@h/db")


def test_non_production_refuses_production_credentials(tmp_path: Path) -> None:
    account = tmp_path / "sa.json"
    account.write_text('{"type": "service_account", "project_id": "bank-prod"}')
    with pytest.raises(ValidationError, match="production Firebase project 'bank-prod'"):
        Settings(
            env="staging",
            fcm_credentials=account,  # type: ignore[arg-type]
            production_fcm_projects=["bank-prod"],
        )
    with pytest.raises(ValidationError, match="production APNs key 'KEY123'"):
        Settings(apns_key_id="KEY123", production_apns_key_ids=["KEY123"])
    staging = Settings(
        env="staging",
        fcm_credentials=account,  # type: ignore[arg-type]
        production_fcm_projects=["bank-prod-eu"],
    )
    assert staging.fcm_credentials == account


def test_production_with_real_provider_needs_credentials() -> None:
    with pytest.raises(ValidationError, match="needs FCM credentials"):
        Settings(
            env="production",
            database_url=PG,
            redis_url=REDIS,  # type: ignore[arg-type]
            provider="real",
            key_pepper="p",
        )  # type: ignore[arg-type]
