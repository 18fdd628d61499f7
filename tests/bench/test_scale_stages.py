"""The scale scenario's claim and record times per batch, read from a worker's log lines
(`wavecast_tools.bench.scale._job_stages`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wavecast_tools.bench.scale import _job_stages


def _line(**fields: object) -> str:
    return json.dumps({"time": "2026-12-07 09:00:00,000", "level": "INFO", **fields})


def test_the_send_jobs_lines_are_summed_and_nothing_else(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text(
        "\n".join(
            [
                _line(
                    message="send job finished",
                    sent=900,
                    batches=2,
                    stage_seconds={"claim": 0.05, "record": 0.02, "provider": 1.0},
                ),
                _line(message="wave released", wave=0),
                "not json: a traceback line",
                _line(
                    message="send job finished",
                    sent=100,
                    batches=2,
                    stage_seconds={"claim": 0.15, "record": 0.06},
                ),
                # A job that found nothing to send still counts its (empty) claims.
                _line(message="send job finished", sent=0, batches=0, stage_seconds={}),
            ]
        )
    )
    stages = _job_stages(log)
    assert (stages.batches, stages.sent) == (4, 1000)
    assert stages.per_batch_ms("claim") == pytest.approx(50.0)
    assert stages.per_batch_ms("record") == pytest.approx(20.0)
    assert stages.per_batch_ms("checks") == 0.0


def test_a_log_without_send_jobs_gives_zero_not_an_error(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text(_line(message="worker started") + "\n")
    stages = _job_stages(log)
    assert (stages.batches, stages.sent, stages.per_batch_ms("claim")) == (0, 0, 0.0)
