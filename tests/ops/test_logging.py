from __future__ import annotations

import json
import logging

import pytest

from app.logging import campaign_var, configure, wave_var


def test_json_logs_carry_campaign_and_wave(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure("INFO", json_logs=True)
    campaign_token = campaign_var.set("c-123")
    wave_token = wave_var.set(2)
    try:
        logging.getLogger("wavecast.test").info("batch sent", extra={"sent": 500})
    finally:
        campaign_var.reset(campaign_token)
        wave_var.reset(wave_token)
        root.handlers[:] = handlers
        root.setLevel(level)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["message"] == "batch sent"
    assert record["level"] == "INFO"
    assert record["campaign_id"] == "c-123"
    assert record["wave"] == 2
    assert record["sent"] == 500
    assert "time" in record
