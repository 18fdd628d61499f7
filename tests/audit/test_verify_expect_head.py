"""`wavecast audit verify --expect-head SEQUENCE:HASH`: a chain that verifies on its own may
still have lost its tail, or everything (an empty log is trivially intact). Given a head
recorded elsewhere earlier, verify refuses a log that is empty, ends before that head, or
carries another hash at that sequence; a log that grew past it is fine."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from app.audit import chain
from app.runtime import Runtime
from tests.audit.test_tamper import record_events, tamper


def wavecast_verify(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAVECAST_DATABASE_URL": database_url, "WAVECAST_JSON_LOGS": "false"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "audit", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def verify(db: Runtime, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(wavecast_verify, db.settings.database_url, *args)


async def current_head(db: Runtime) -> str:
    """The head as an operator would keep it: from verify's own answer."""
    result = await verify(db)
    assert result.returncode == 0, result.stderr
    found = re.search(r"head sequence (\d+), hash ([0-9a-f]{64})", result.stdout)
    assert found, result.stdout
    return f"{found[1]}:{found[2]}"


async def test_an_intact_log_passes_at_its_head_and_after_growing(db: Runtime) -> None:
    await record_events(db, 3)
    head = await current_head(db)
    result = await verify(db, "--expect-head", head)
    assert result.returncode == 0, result.stderr
    assert "audit log intact: 3 events" in result.stdout

    await record_events(db, 2)  # the log carries on past the kept head
    result = await verify(db, "--expect-head", head)
    assert result.returncode == 0, result.stderr
    assert "audit log intact: 5 events" in result.stdout


async def test_an_emptied_log_fails(db: Runtime) -> None:
    await record_events(db, 3)
    head = await current_head(db)
    await tamper(db, "DELETE FROM audit_event")
    assert (await verify(db)).returncode == 0  # on its own, an empty chain looks intact

    result = await verify(db, "--expect-head", head)
    assert result.returncode == 1
    assert "empty" in result.stderr
    assert "sequence 3" in result.stderr


async def test_a_log_cut_short_fails(db: Runtime) -> None:
    await record_events(db, 4)
    head = await current_head(db)
    await tamper(db, "DELETE FROM audit_event WHERE sequence >= 3")
    assert "intact: 2 events" in (await verify(db)).stdout

    result = await verify(db, "--expect-head", head)
    assert result.returncode == 1
    assert "ends at sequence 2" in result.stderr
    assert "sequence 4" in result.stderr


async def test_a_rewritten_tail_fails_at_the_expected_sequence(db: Runtime) -> None:
    await record_events(db, 3)
    head = await current_head(db)
    # Drop the last event and append another in its place: a chain that verifies on its own.
    await tamper(db, "DELETE FROM audit_event WHERE sequence = 3")
    await record_events(db, 2)
    assert "intact: 4 events" in (await verify(db)).stdout

    result = await verify(db, "--expect-head", head)
    assert result.returncode == 1
    assert "(sequence 3)" in result.stderr
    assert head.split(":")[1] in result.stderr


@pytest.mark.parametrize("bad", ["", "3", "abc:def", "0:" + "0" * 64, "3:" + "z" * 64, "-1:aa"])
async def test_a_malformed_head_is_a_usage_error(db: Runtime, bad: str) -> None:
    result = await verify(db, "--expect-head", bad)
    assert result.returncode == 2
    assert "--expect-head" in result.stderr
    assert "SEQUENCE:HASH" in result.stderr


def test_the_walker_checks_the_expected_head() -> None:
    events: list[chain.StoredEvent] = []
    prev = chain.GENESIS
    for sequence in (1, 2, 3):
        fields = chain.ChainFields(
            sequence=sequence,
            occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
            actor="a",
            action="x",
            subject_type="t",
            subject_id=None,
            reason=None,
            before=None,
            after=None,
        )
        digest = chain.digest(fields, prev)
        events.append(chain.StoredEvent(sequence, fields, prev, digest))
        prev = digest
    head = chain.Head.parse(f"2:{events[1].hash}")
    assert chain.verify(events, expected_head=head).problem is None
    assert chain.verify(events[:2], expected_head=head).problem is None
    short = chain.verify(events[:1], expected_head=head)
    assert short.broken is None and short.problem is not None
    assert "ends at sequence 1" in short.problem
    empty = chain.verify([], expected_head=head).problem
    assert empty is not None and "empty" in empty
    other = chain.verify(events, expected_head=chain.Head(2, events[2].hash)).problem
    assert other is not None and "(sequence 2)" in other
