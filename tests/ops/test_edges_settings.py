"""Settings errors name the variable and what it accepts; list settings take the natural
comma-separated form as well as JSON."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings


@pytest.mark.parametrize(
    "written",
    ["proj-a,proj-b", " proj-a , proj-b ,", '["proj-a", "proj-b"]'],
)
def test_list_settings_take_commas_or_json(monkeypatch: pytest.MonkeyPatch, written: str) -> None:
    monkeypatch.setenv("WAVECAST_PRODUCTION_FCM_PROJECTS", written)
    monkeypatch.setenv("WAVECAST_PRODUCTION_APNS_KEY_IDS", written.replace("proj", "KEY"))
    s = Settings()
    assert s.production_fcm_projects == ["proj-a", "proj-b"]
    assert s.production_apns_key_ids == ["KEY-a", "KEY-b"]


def test_a_single_name_and_an_empty_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVECAST_PRODUCTION_FCM_PROJECTS", "bank-prod")
    monkeypatch.setenv("WAVECAST_PRODUCTION_APNS_KEY_IDS", "")
    s = Settings()
    assert s.production_fcm_projects == ["bank-prod"]
    assert s.production_apns_key_ids == []


def test_a_broken_json_list_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVECAST_PRODUCTION_APNS_KEY_IDS", '["K1",')
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "WAVECAST_PRODUCTION_APNS_KEY_IDS" in str(caught.value)
    assert "commas" in str(caught.value)


def test_a_bad_environment_names_the_variable_and_the_accepted_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WAVECAST_ENV", "prod")
    with pytest.raises(ValidationError) as caught:
        Settings()
    [error] = caught.value.errors()
    message = str(error["msg"])
    assert "WAVECAST_ENV" in message
    for accepted in ("development", "staging", "production"):
        assert accepted in message
    assert "'prod'" in message


def test_every_field_error_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVECAST_PROVIDER", "fake")
    monkeypatch.setenv("WAVECAST_MAX_BODY_BYTES", "lots")
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value.errors()[0]["msg"])
    assert "WAVECAST_PROVIDER must be one of: sandbox or real (got 'fake')" in message
    assert "WAVECAST_MAX_BODY_BYTES" in message and "'lots'" in message


def test_a_secret_is_never_repeated_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVECAST_KEY_PEPPER", "very-secret-pepper")
    monkeypatch.setenv("WAVECAST_ENV", "production")  # refused: SQLite, sandbox, ...
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "very-secret-pepper" not in str(caught.value)
