"""A release's read of the send order asks, device by device, whether the ledger already
holds it. On PostgreSQL that probe must be one look into the campaign's partition's
(campaign, device) unique index: with statistics taken before the campaign's rows, the
planner believed the campaign had none and walked all of its rows for every device read (a
1,000,000-device release stalled on its second wave). The release takes the partition's
statistics again when they are stale (app.delivery.partitions.analyze_if_stale)."""

from __future__ import annotations

import itertools
import re

import httpx
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from app.auth.models import Scope
from app.db.session import unit_of_work
from app.delivery import ledger, partitions
from app.delivery.models import Delivery
from app.devices.models import Device, DeviceStatus
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    create_and_start,
    deliveries,
    tick_until_released,
)

DEVICES = 3000
_device = Device.__table__  # type: ignore[attr-defined]
_delivery = Delivery.__table__  # type: ignore[attr-defined]


async def _released(client: httpx.AsyncClient, headers: dict[str, str], db: Runtime) -> object:
    body = campaign_body(rollout={"waves": [{"percent": 100}]})
    campaign_id = await create_and_start(client, headers, body)
    await tick_until_released(db, campaign_id, DEVICES)
    return campaign_id


async def test_the_release_probe_reads_the_partitions_unique_index_under_old_statistics(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool
) -> None:
    if not is_postgres:
        return  # the plan is PostgreSQL's; SQLite's one table has the same unique index
    await add_devices(db, DEVICES)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    await _released(client, headers, db)
    # Statistics taken now know only the first campaign; the second one's rows come after.
    async with db.engine.connect() as conn:
        await conn.execute(text("ANALYZE delivery"))
        await conn.commit()
    second = await _released(client, headers, db)
    month = partitions.month_of_ref(min(r.id or 0 for r in await deliveries(db, second)))

    # The release's read takes the statistics again first: they do not know the campaign.
    async with unit_of_work(db.sessionmaker) as session:
        assert await partitions.analyze_if_stale(session, month, second)  # type: ignore[arg-type]
    async with unit_of_work(db.sessionmaker) as session:
        # Now they do, and a read does not take them again.
        assert not await partitions.analyze_if_stale(session, month, second)  # type: ignore[arg-type]
    query = ledger.range_query(
        second,  # type: ignore[arg-type]
        month,
        _device.c.bucket >= 0,
        _device.c.status == DeviceStatus.active.value,
        5000,
    )
    sql = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    async with db.engine.connect() as conn:
        plan = "\n".join(
            r[0] for r in await conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"))
        )
    assert f"{partitions.table_name(month)}_campaign_device" in plan, plan
    # One probe per device read: a few buffers each, never the campaign's rows.
    lines = plan.splitlines()
    probes = [i for i, line in enumerate(lines) if "_campaign_device on" in line]
    assert probes, plan
    for i in probes:
        loops = int(re.search(r"loops=(\d+)", lines[i]).group(1))  # type: ignore[union-attr]
        # The node's own lines follow it, down to the next node ("->").
        details = itertools.takewhile(lambda line: "->" not in line, lines[i + 1 :])
        buffers = next(line for line in details if "Buffers:" in line)
        touched = sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", buffers))
        # A B-tree probe touches a few pages; walking the campaign's rows, thousands.
        assert loops >= 1000 and touched / loops <= 10, plan
