"""The worker's ledger jobs: once an hour, prune the ledger of the campaigns that ended more
than WAVECAST_LEDGER_RETENTION_DAYS ago (`app.delivery.retention`), and make the ledger's
partitions ahead (PostgreSQL: this month's and the next one's, `app.delivery.partitions`;
also when the worker starts).

arq enqueues each run of a cron job under one id, so one worker of the deployment runs it;
two runs that overlap anyway are safe (a campaign's summary is written once, under its lock,
and deleting rows another run already deleted deletes nothing).
"""

from __future__ import annotations

import logging
from typing import Any

from app.auth.principal import SYSTEM
from app.db.types import utcnow
from app.delivery import partitions, retention
from app.ops.worker_metrics import LEDGER_PARTITIONS_DROPPED
from app.runtime import Runtime
from workers.context import WorkerContext

log = logging.getLogger("wavecast.worker")

# Minute of each hour the job runs at.
PRUNE_MINUTE = 17
# A large backlog of campaigns is pruned over several runs rather than in one long job.
PRUNE_TIMEOUT_SECONDS = 3000
# Minute of each hour the partitions ahead are made at.
PARTITIONS_MINUTE = 7


async def make_partitions_ahead(runtime: Runtime) -> list[int]:
    made = await partitions.ensure_ahead(runtime.engine, utcnow())
    for month in made:
        log.info("ledger partition made", extra={"partition": partitions.table_name(month)})
    return made


async def partitions_ahead(ctx: dict[str, Any]) -> dict[str, list[int]]:
    return {"made": await make_partitions_ahead(WorkerContext.of(ctx).runtime)}


async def prune_ledger(ctx: dict[str, Any]) -> dict[str, int]:
    wc = WorkerContext.of(ctx)
    days = wc.runtime.settings.ledger_retention_days
    if days is None:
        return {"campaigns": 0, "rows": 0, "events": 0}

    def pruned(p: retention.Pruned) -> None:
        log.info(
            "ledger pruned",
            extra={"campaign_id": str(p.campaign_id), "rows": p.rows, "events": p.events},
        )

    def dropped(month: int) -> None:
        LEDGER_PARTITIONS_DROPPED.inc()
        log.info("ledger partition dropped", extra={"partition": partitions.table_name(month)})

    done = await retention.prune(
        wc.runtime.sessionmaker,
        SYSTEM,
        retention_days=days,
        now=utcnow(),
        on_pruned=pruned,
        on_dropped=dropped,
    )
    return {
        "campaigns": len(done),
        "rows": sum(p.rows for p in done),
        "events": sum(p.events for p in done),
    }
