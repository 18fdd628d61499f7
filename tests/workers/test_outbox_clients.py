"""The outbox job's clients are built once, when the worker starts, and closed when it stops:
arq hands every job a copy of the worker's context, so clients a job put there were built
again on every run (once a second) and never closed."""

from __future__ import annotations

from app.notify.dispatch import OutboxDeps
from app.runtime import Runtime
from workers.main import build_worker
from workers.outbox import _deps


async def test_the_outbox_keeps_one_set_of_clients_from_start_to_stop(db: Runtime) -> None:
    worker = build_worker(db.settings, burst=True, max_burst_jobs=2)
    try:
        await worker.main()  # starts, runs the tick and the outbox once, stops polling
        deps = worker.ctx.get("wavecast_outbox")
        assert isinstance(deps, OutboxDeps)
        job_ctx = {**worker.ctx}  # what arq hands each run
        assert _deps(job_ctx) is deps and _deps({**worker.ctx}) is deps
        assert not deps.http.is_closed
    finally:
        await worker.close()
    assert "wavecast_outbox" not in worker.ctx
    assert deps.http.is_closed
