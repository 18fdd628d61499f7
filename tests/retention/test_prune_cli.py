"""`wavecast ledger prune [--dry-run]`, run as a real process, and the worker's hourly job."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import subprocess
import sys
from typing import Any

import httpx

from app.audit import repository as audit_repo
from app.delivery import retention
from app.runtime import Runtime
from tests.conftest import KeyMaker
from tests.retention.test_prune import DAYS, _counts, _finished
from tests.support import add_devices, worker_env
from workers.context import WorkerContext
from workers.retention import prune_ledger


async def wavecast(runtime: Runtime, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", *args],
        env=worker_env(runtime.settings, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_dry_run_lists_what_would_go_and_changes_nothing(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 8)
    old = await _finished(client, make_key, db, days_ago=DAYS + 2, name="Old statement")
    recent = await _finished(client, make_key, db, days_ago=1, name="Recent statement")
    before = {c: await _counts(db, c) for c in (old, recent)}

    dry = await wavecast(db, "ledger", "prune", "--dry-run", "--days", str(DAYS))

    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].startswith("would prune 1 campaigns that ended before ")
    assert len(lines) == 2 and str(old) in lines[1] and "Old statement" in lines[1]
    assert f"{before[old][0]:>10} rows" in lines[1] and "completed" in lines[1]
    assert {c: await _counts(db, c) for c in before} == before
    async with db.sessionmaker() as session:
        assert await audit_repo.list_events(session, limit=5, action=retention.AUDIT_ACTION) == []

    # The setting is the default retention; the real run prunes and is audited as the CLI.
    done = await wavecast(db, "ledger", "prune", WAVECAST_LEDGER_RETENTION_DAYS=str(DAYS))

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("pruned 1 campaigns")
    assert await _counts(db, old) == (0, 0, 2)
    assert await _counts(db, recent) == before[recent]
    async with db.sessionmaker() as session:
        (event,) = await audit_repo.list_events(session, limit=5, action=retention.AUDIT_ACTION)
    assert event.actor == f"cli:{getpass.getuser()}" and event.subject_id == str(old)


async def test_prune_without_a_retention_or_with_a_bad_one_says_so(db: Runtime) -> None:
    unset = await wavecast(db, "ledger", "prune", "--dry-run")
    assert unset.returncode != 0
    assert "WAVECAST_LEDGER_RETENTION_DAYS" in unset.stderr
    for days in ("0", "soon"):
        bad = await wavecast(db, "ledger", "prune", "--days", days)
        assert bad.returncode == 2 and "--days" in bad.stderr, bad.stderr
    invalid = await wavecast(db, "ledger", "prune", WAVECAST_LEDGER_RETENTION_DAYS="0")
    assert invalid.returncode != 0 and "LEDGER_RETENTION_DAYS" in invalid.stderr


async def test_the_worker_job_prunes_by_the_setting_and_only_then(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 6)
    old = await _finished(client, make_key, db, days_ago=DAYS + 1)
    before = await _counts(db, old)

    def job_context(runtime: Runtime) -> dict[str, Any]:
        # The job reads only the runtime; the rest of a worker's context is not involved.
        unused: Any = None
        wc = WorkerContext(
            runtime=runtime, worker_id="t", control=unused, providers=unused, sender=unused
        )
        return {"wavecast": wc}

    assert await prune_ledger(job_context(db)) == {"campaigns": 0, "rows": 0, "events": 0}
    assert await _counts(db, old) == before
    kept = dataclasses.replace(
        db, settings=db.settings.model_copy(update={"ledger_retention_days": DAYS})
    )
    assert await prune_ledger(job_context(kept)) == {
        "campaigns": 1,
        "rows": before[0],
        "events": before[1],
    }
    assert await _counts(db, old) == (0, 0, 2)
