"""Ledger queries: the only place that reads or writes delivery rows.

Invariants:
- a (campaign, device) pair has at most one row (unique constraint), so a device is sent a
  campaign at most once however often a wave is released or a job runs;
- a row is sent only by the worker holding its lease (`lease_token`), and its outcome is
  recorded only under that same lease, so a worker whose lease expired and was reclaimed
  can never overwrite what the next holder recorded;
- rows leave `sending` only by an outcome or by the reconciler reclaiming an expired lease:
  a crash never loses a device;
- a claim given the campaign's audience leases a row only if its device is still in that
  audience when the row is claimed; the others end `cancelled` in the same statement.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    CTE,
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    Select,
    String,
    Subquery,
    Text,
    Update,
    Uuid,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.campaigns.models import Campaign
from app.campaigns.repository import may_send_clause, stopped_for_good_clause
from app.delivery import partitions
from app.delivery.models import (
    CLAIMABLE_PREDICATE,
    OPEN_STATUSES,
    Delivery,
    DeliveryStatus,
    LedgerWaveSummary,
    claim_due,
)
from app.devices.models import Device, DeviceStatus
from app.rollout.bucketing import BUCKET_SPACE

_delivery = Delivery.__table__  # type: ignore[attr-defined]
_device = Device.__table__  # type: ignore[attr-defined]
_summary = LedgerWaveSummary.__table__  # type: ignore[attr-defined]
_campaign = Campaign.__table__  # type: ignore[attr-defined]


def in_campaign(campaign_id: uuid.UUID) -> ColumnElement[bool]:
    """A campaign's rows. With its ledger month, read once per statement (an init plan), so
    PostgreSQL reads the campaign's partition only (app.delivery.partitions)."""
    month = select(_campaign.c.ledger_month).where(_campaign.c.id == campaign_id)
    return and_(
        _delivery.c.campaign_id == campaign_id,
        _delivery.c.ledger_month == month.scalar_subquery(),
    )


def by_ids(session: AsyncSession, ids: Sequence[int]) -> ColumnElement[bool]:
    """Rows by id. On PostgreSQL with their months (a row id names its partition): the
    statement reads those partitions only."""
    found: ColumnElement[bool] = _delivery.c.id.in_(ids)
    if session.get_bind().dialect.name != "postgresql":
        return found
    return and_(_delivery.c.ledger_month.in_(partitions.months_of_refs(ids)), found)


def order_key(rotation: int) -> ColumnElement[int]:
    """The campaign's send order (app.rollout.bucketing.order_key, in SQL)."""
    key: ColumnElement[int] = (_device.c.bucket + literal(BUCKET_SPACE - rotation)) % literal(
        BUCKET_SPACE
    )
    return key


async def count_audience(session: AsyncSession, audience: ColumnElement[bool]) -> int:
    query = select(func.count()).select_from(_device).where(audience)
    return int((await session.execute(query)).scalar_one())


async def count_audience_upto(
    session: AsyncSession, audience: ColumnElement[bool], limit: int
) -> int:
    """min(audience size, `limit`): reads at most `limit` audience devices, so a release can
    bound a wave from below without counting ten million devices first."""
    if limit <= 0:
        return 0
    some = select(literal(1)).select_from(_device).where(audience).limit(limit).subquery()
    return int((await session.execute(select(func.count()).select_from(some))).scalar_one())


async def count_in_ledger(session: AsyncSession, campaign_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(_delivery).where(in_campaign(campaign_id))
    return int((await session.execute(query)).scalar_one())


async def count_in_wave(session: AsyncSession, campaign_id: uuid.UUID, wave: int) -> int:
    """Rows the ledger holds as members of `wave` (an index-only count)."""
    query = (
        select(func.count())
        .select_from(_delivery)
        .where(in_campaign(campaign_id), _delivery.c.wave == wave)
    )
    return int((await session.execute(query)).scalar_one())


async def counts_in_wave(
    session: AsyncSession, campaign_id: uuid.UUID, wave: int
) -> dict[str, int]:
    """Rows of one wave per status, every row read: what a finished wave's record holds. The
    tick's questions each second of a sending wave are asked without reading it whole
    (`count_with_status`, `any_open_in_wave`)."""
    query = (
        select(_delivery.c.status, func.count())
        .where(in_campaign(campaign_id), _delivery.c.wave == wave)
        .group_by(_delivery.c.status)
    )
    return {status: int(n) for status, n in (await session.execute(query)).all()}


def count_with_status_query(
    campaign_id: uuid.UUID, wave: int, status: DeliveryStatus, upto: int | None = None
) -> Select[int]:
    """`count_with_status`'s statement."""
    rows = (
        select(literal(1))
        .select_from(_delivery)
        .where(
            in_campaign(campaign_id), _delivery.c.wave == wave, _delivery.c.status == status.value
        )
    )
    if upto is not None:
        rows = rows.limit(upto)
    return select(func.count()).select_from(rows.subquery())


async def count_with_status(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    wave: int,
    status: DeliveryStatus,
    *,
    upto: int | None = None,
) -> int:
    """Rows of one wave with `status`, counted up to `upto` (None: all of them). A count that
    stops at `upto` reads at most that many of the wave's index entries for the status,
    however large the wave is."""
    async with planned_by_index(session):
        query = count_with_status_query(campaign_id, wave, status, upto)
        return int((await session.execute(query)).scalar_one())


def any_open_query(campaign_id: uuid.UUID, wave: int) -> Select[int]:
    """`any_open_in_wave`'s statement."""
    return (
        select(literal(1))
        .select_from(_delivery)
        .where(
            in_campaign(campaign_id),
            _delivery.c.wave == wave,
            _delivery.c.status.in_(sorted(_OPEN_VALUES)),
        )
        .limit(1)
    )


async def any_open_in_wave(session: AsyncSession, campaign_id: uuid.UUID, wave: int) -> bool:
    """Whether a row of the wave is still open (queued, sending or retrying): the first one
    found answers. The index entries of rows that were open and are done since are skipped
    cheaply once a scan has found them dead, so asking each second does not read the wave
    each second."""
    async with planned_by_index(session):
        return (await session.execute(any_open_query(campaign_id, wave))).first() is not None


_OPEN_VALUES = frozenset(s.value for s in OPEN_STATUSES)


# Planner settings for the release's transaction (SET LOCAL, gone at its end). The audience
# minus the ledger is a hash anti-join: the ledger's device ids hashed once in memory
# (work_mem: in batches on disk, a 1,000,000-device release chunk took 1.5 s, in memory
# 0.8 s), never a nested loop. The ledger grows by a wave between two ANALYZEs, so the
# planner may believe the campaign holds one row and pick a nested loop that compares every
# audience device with every ledger row: a 50,000-row chunk at 1,000,000 devices did not end
# in ten minutes. Counting the ledger's devices still in the audience joins the same two
# sets and takes the same settings.
_RELEASE_PLANNER = ("SET LOCAL work_mem = '128MB'", "SET LOCAL enable_nestloop = off")


async def _release_planner(session: AsyncSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        for setting in _RELEASE_PLANNER:
            await session.execute(text(setting))


async def count_held(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID,
    audience: ColumnElement[bool],
    before_wave: int,
) -> int:
    """How many devices of the audience, as it is now, the campaign's waves before
    `before_wave` hold: ledger rows of devices that have left the audience since do not
    count."""
    await _release_planner(session)
    query = (
        select(func.count())
        .select_from(_delivery.join(_device, _delivery.c.device_id == _device.c.id))
        .where(in_campaign(campaign_id), _delivery.c.wave < before_wave, audience)
    )
    return int((await session.execute(query)).scalar_one())


@dataclass(frozen=True)
class PlanPosition:
    """A place in a campaign's send order: the (bucket, device id) of a device. The order
    is ascending (bucket - rotation) mod 2**32, then id: the devices with a bucket at or
    after the rotation in (bucket, id) order, then the others in (bucket, id) order."""

    bucket: int
    device_id: uuid.UUID


@dataclass(frozen=True)
class Candidate:
    """A device `next_members` offers, with its place in the order. `behind`: it lies at or
    before the campaign's plan position (it joined the audience after planning passed its
    place), so taking it never moves the position."""

    device_id: uuid.UUID
    bucket: int
    behind: bool = False

    @property
    def position(self) -> PlanPosition:
        return PlanPosition(self.bucket, self.device_id)


async def next_members(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID,
    rotation: int,
    audience: ColumnElement[bool],
    limit: int,
) -> list[uuid.UUID]:
    """The next `limit` audience devices of the campaign's order that the ledger does not
    hold yet, in that order, read from the start of the order: the whole audience minus the
    ledger, sorted (app.rollout.planner.reference_release's choice, stated in SQL).

    A plain read (PostgreSQL may scan the audience with parallel workers; an INSERT ...
    SELECT never does), so the caller can size the chunk afterwards and put a prefix of it
    in the ledger with `add_members`. Releases read through `plan_members`, which reads on
    from where the campaign's planning stopped instead."""
    if limit <= 0:
        return []
    await _release_planner(session)
    rows = await session.execute(_from_the_start(campaign_id, rotation, audience, limit))
    return [device_id for device_id, _ in rows.all()]


def _not_in_ledger(campaign_id: uuid.UUID) -> ColumnElement[bool]:
    return ~exists().where(and_(in_campaign(campaign_id), _delivery.c.device_id == _device.c.id))


def _from_the_start(
    campaign_id: uuid.UUID, rotation: int, audience: ColumnElement[bool], limit: int
) -> Select[tuple[uuid.UUID, int]]:
    return (
        select(_device.c.id, _device.c.bucket)
        .where(audience, _not_in_ledger(campaign_id))
        .order_by(order_key(rotation), _device.c.id)
        .limit(limit)
    )


async def plan_members(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID,
    rotation: int,
    audience: ColumnElement[bool],
    limit: int,
    position: PlanPosition | None,
    sweep_behind: bool,
) -> list[Candidate]:
    """`next_members`' answer (the next `limit` audience devices of the campaign's order
    that the ledger does not hold yet, in that order), read from the campaign's plan
    position: the furthest device of its order planned so far (None: nothing yet).

    PostgreSQL reads the order as ranges of ix_device_bucket_id (bucket, id) past
    `position`, each device checked against the ledger by its unique index (a probe per
    row read, never a join over the audience): a chunk costs about the rows
    it returns, however large the audience (ordering the whole audience for every 50,000-row
    chunk took about ten seconds at 10,000,000 devices).

    Devices behind the position. Every audience device up to `position` was put in the
    ledger when planning passed it; what the ledger may lack there is a device that joined
    the audience since (registered, tagged, reactivated). The reference takes those first,
    so with `sweep_behind` they are read first (`behind_members`): the devices up to
    `position` minus the ledger, a hash anti-join whose cost grows with how far the
    campaign has gone, not with the audience, then the audience applied to what is left.
    The engine sweeps on a wave's first chunk, again on the next ones
    while a sweep fills a whole chunk, and not after one has come back short (all found:
    `Planned.swept`). So every wave's release is the reference's for the audience as it is
    at the release, as the tests of changing audiences pin it; a device that joins behind
    the position while the same wave's later chunks are being added waits for the next
    wave's sweep. Chosen over sweeping only in the last wave because the reference wants a
    joiner in the very next wave (a late joiner is earlier in the order than what the wave
    would otherwise add), and over an anti-join of the whole order per chunk because that
    is what cost ten seconds.

    SQLite (the embedded default, small audiences) keeps the plain query of
    `next_members`, whatever the position."""
    if limit <= 0:
        return []
    if session.get_bind().dialect.name != "postgresql":
        rows = await session.execute(_from_the_start(campaign_id, rotation, audience, limit))
        return [Candidate(device_id, int(bucket)) for device_id, bucket in rows.all()]
    found: list[Candidate] = []
    if position is not None and sweep_behind:
        found = await behind_members(
            session,
            campaign_id=campaign_id,
            rotation=rotation,
            audience=audience,
            limit=limit,
            position=position,
        )
    if len(found) >= limit:
        return found
    return found + await ahead_members(
        session,
        campaign_id=campaign_id,
        rotation=rotation,
        audience=audience,
        limit=limit - len(found),
        position=position,
    )


async def ahead_members(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID,
    rotation: int,
    audience: ColumnElement[bool],
    limit: int,
    position: PlanPosition | None,
) -> list[Candidate]:
    """`plan_members` past the position only (PostgreSQL)."""
    # Read once per chunk, not per range: nothing is added to the ledger between the two.
    month = await ledger_month(session, campaign_id)
    await partitions.analyze_if_stale(session, month, campaign_id)
    found: list[Candidate] = []
    for part in _ahead(rotation, position):
        if len(found) >= limit:
            break
        rows = await session.execute(
            range_query(campaign_id, month, part, audience, limit - len(found))
        )
        found += [Candidate(device_id, int(bucket)) for device_id, bucket in rows.all()]
    return found


async def behind_members(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID,
    rotation: int,
    audience: ColumnElement[bool],
    limit: int,
    position: PlanPosition,
) -> list[Candidate]:
    """`plan_members`' sweep (PostgreSQL): the first `limit` audience devices up to the
    position, in the order, that the ledger does not hold (devices that joined the
    audience after planning passed their place).

    Each range is first the index alone minus the ledger: ix_device_bucket_id read
    index-only, the campaign's ledger hashed once in memory (never a nested loop, never a
    scan of the device table, which the planner picks when it believes the ledger small).
    Only the devices left are read from the table, one by one, to apply the audience:
    joiners and inactive devices for an audience of everyone, but for a narrow segment
    also every device outside it up to the position (its cost then grows with that part
    of the device table)."""
    await _release_planner(session)
    # Estimates built on a stale ledger make the plan look costly enough to compile: a
    # quarter of a second here, for nothing.
    await session.execute(text("SET LOCAL jit = off"))
    found: list[Candidate] = []
    for part in _behind(rotation, position):
        if len(found) >= limit:
            break
        fresh = (
            select(_device.c.id, _device.c.bucket)
            .where(part, _not_in_ledger(campaign_id))
            .cte("fresh")
            .prefix_with("MATERIALIZED")
        )
        # OFFSET 0 keeps the check a lookup per remaining device: pulled up into a join,
        # it could become a scan of the whole table.
        in_audience = (
            select(literal(1))
            .select_from(_device)
            .where(_device.c.id == fresh.c.id, audience)
            .offset(0)
            .exists()
        )
        rows = await session.execute(
            select(fresh.c.id, fresh.c.bucket)
            .where(in_audience)
            .order_by(fresh.c.bucket, fresh.c.id)
            .limit(limit - len(found))
        )
        found += [Candidate(device_id, int(bucket), True) for device_id, bucket in rows.all()]
    return found


def _at_or_after_rotation(rotation: int) -> ColumnElement[bool]:
    after: ColumnElement[bool] = _device.c.bucket >= rotation
    return after


def _before_rotation(rotation: int) -> ColumnElement[bool]:
    before: ColumnElement[bool] = _device.c.bucket < rotation
    return before


def _past(position: PlanPosition) -> ColumnElement[bool]:
    place: ColumnElement[bool] = tuple_(_device.c.bucket, _device.c.id) > tuple_(
        literal(position.bucket, BigInteger), literal(position.device_id, Uuid)
    )
    return place


def _up_to(position: PlanPosition) -> ColumnElement[bool]:
    place: ColumnElement[bool] = tuple_(_device.c.bucket, _device.c.id) <= tuple_(
        literal(position.bucket, BigInteger), literal(position.device_id, Uuid)
    )
    return place


def _ahead(rotation: int, position: PlanPosition | None) -> list[ColumnElement[bool]]:
    """The order after `position` (all of it for None), as (bucket, id) ranges in order."""
    if position is None:
        return [_at_or_after_rotation(rotation), _before_rotation(rotation)]
    if position.bucket >= rotation:
        return [and_(_at_or_after_rotation(rotation), _past(position)), _before_rotation(rotation)]
    return [and_(_before_rotation(rotation), _past(position))]


def _behind(rotation: int, position: PlanPosition) -> list[ColumnElement[bool]]:
    """The order up to `position`, included, as (bucket, id) ranges in order."""
    if position.bucket >= rotation:
        return [and_(_at_or_after_rotation(rotation), _up_to(position))]
    return [_at_or_after_rotation(rotation), and_(_before_rotation(rotation), _up_to(position))]


def range_query(
    campaign_id: uuid.UUID,
    month: int,
    part: ColumnElement[bool],
    audience: ColumnElement[bool],
    limit: int,
) -> Select[tuple[uuid.UUID, int]]:
    """The next `limit` devices of one range of the send order that the ledger lacks."""
    # Within one range the order is (bucket, id): the index's, so nothing is sorted. Each
    # device read is looked up in the ledger's unique index, one probe per device: OFFSET 0
    # keeps the check from becoming a join, which a planner that believes the campaign's
    # ledger tiny (its statistics predate the last wave) turned into comparing every device
    # with every ledger row (4-5 s for a 5,000-row chunk against 10,000 rows). On PostgreSQL
    # the month is a value, not read by the statement: the planner prunes to the campaign's
    # partition before it chooses an index, and the probe is the plain ledger's, every column
    # of the partition's (campaign, device) unique index (app.delivery.partitions).
    held = (
        select(literal(1))
        .select_from(_delivery)
        .where(
            _delivery.c.campaign_id == campaign_id,
            _delivery.c.ledger_month == month,
            _delivery.c.device_id == _device.c.id,
        )
        .offset(0)
        .exists()
    )
    return (
        select(_device.c.id, _device.c.bucket)
        .where(part, audience, ~held)
        .order_by(_device.c.bucket, _device.c.id)
        .limit(limit)
    )


def plan_position(taken: Sequence[Candidate], position: PlanPosition | None) -> PlanPosition | None:
    """The campaign's plan position once `taken` (a prefix of `next_members`' answer) is in
    the ledger: its last device ahead of `position`, or `position` if it took none."""
    ahead = [candidate for candidate in taken if not candidate.behind]
    return ahead[-1].position if ahead else position


async def add_members(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID,
    wave: int,
    device_ids: Sequence[uuid.UUID],
    now: datetime,
    due_in: DueIn | None = None,
) -> int:
    """Put these devices in the ledger as members of `wave`; a device already there keeps
    its row and its wave (earlier waves never change). Returns rows added.

    With `due_in`, each row waits until the instant it gives for its device's time zone
    (a local-time campaign); without, rows are due at once."""
    if not device_ids:
        return 0
    month = await ledger_month(session, campaign_id)
    await partitions.ensure(session, month)
    dues: list[datetime | None] = [None] * len(device_ids)
    if due_in is not None:
        zones = await _timezones(session, device_ids)
        dues = [due_in(zones.get(device_id)) for device_id in device_ids]
    if session.get_bind().dialect.name == "postgresql":
        # One statement whatever the count: the ids (and due times) travel as arrays.
        result = await session.execute(
            _ADD_MEMBERS,
            {
                "campaign": campaign_id,
                "month": month,
                "ids": list(device_ids),
                "dues": dues,
                "wave": wave,
                "now": now,
            },
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
    before = await count_in_ledger(session, campaign_id)
    await session.execute(
        sqlite.insert(_delivery).on_conflict_do_nothing(),
        [
            {
                "campaign_id": campaign_id,
                "device_id": device_id,
                "ledger_month": month,
                "wave": wave,
                "status": DeliveryStatus.queued.value,
                "attempts": 0,
                "next_attempt_at": due,
                "created_at": now,
                "updated_at": now,
            }
            for device_id, due in zip(device_ids, dues, strict=True)
        ],
    )
    return await count_in_ledger(session, campaign_id) - before


async def ledger_month(session: AsyncSession, campaign_id: uuid.UUID) -> int:
    """The campaign's ledger month: the partition its rows live in."""
    month = await session.execute(
        select(_campaign.c.ledger_month).where(_campaign.c.id == campaign_id)
    )
    return int(month.scalar_one())


# When a device's row of a local-time campaign is due, from its time zone (None: none set).
DueIn = Callable[[str | None], datetime]


async def _timezones(
    session: AsyncSession, device_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str | None]:
    # In slices: one bound parameter per id, and drivers cap a statement's parameters
    # (asyncpg at 32,767; a release chunk can hold 50,000 devices).
    zones: dict[uuid.UUID, str | None] = {}
    for start in range(0, len(device_ids), _LOOKUP_SLICE):
        part = list(device_ids[start : start + _LOOKUP_SLICE])
        rows = await session.execute(
            select(_device.c.id, _device.c.timezone).where(_device.c.id.in_(part))
        )
        zones.update(rows.tuples().all())
    return zones


_LOOKUP_SLICE = 10_000


_ADD_MEMBERS = text(
    """
    INSERT INTO delivery (campaign_id, device_id, ledger_month, wave, status, attempts,
                          next_attempt_at, created_at, updated_at)
    SELECT :campaign, ids.id, :month, :wave, 'queued', 0, ids.due, :now, :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:dues AS timestamptz[]))
         WITH ORDINALITY AS ids(id, due, position)
    ORDER BY ids.position
    -- (campaign, device) is unique in each partition (app.delivery.partitions); the
    -- partitioned table has no constraint to name.
    ON CONFLICT DO NOTHING
    """
).bindparams(
    bindparam("campaign", type_=Uuid),
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("dues", type_=ARRAY(DateTime(timezone=True))),
    bindparam("now", type_=DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Planned:
    """What `add_wave_members` did: rows added, the campaign's plan position after them,
    and whether the devices behind the old position are all in the ledger now."""

    added: int
    position: PlanPosition | None
    swept: bool


async def add_wave_members(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID,
    rotation: int,
    wave: int,
    audience: ColumnElement[bool],
    count: int,
    now: datetime,
    due_in: DueIn | None = None,
    position: PlanPosition | None,
    sweep_behind: bool,
) -> Planned:
    """Put the next `count` audience devices of the campaign's order into the ledger.

    Devices already in the ledger keep their row and their wave: earlier waves never change.
    """
    members = await plan_members(
        session,
        campaign_id=campaign_id,
        rotation=rotation,
        audience=audience,
        limit=count,
        position=position,
        sweep_behind=sweep_behind,
    )
    added = await add_members(
        session,
        campaign_id=campaign_id,
        wave=wave,
        device_ids=[m.device_id for m in members],
        now=now,
        due_in=due_in,
    )
    behind = sum(1 for m in members if m.behind)
    return Planned(
        added,
        plan_position(members, position),
        swept=not sweep_behind or position is None or behind < count,
    )


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    device_id: uuid.UUID
    wave: int
    attempts: int
    created_at: datetime
    token: str
    platform: str
    locale: str | None
    apns_environment: str | None
    is_test_device: bool
    device_status: str
    # The device's IANA time zone (quiet hours are device-local); None: the default zone.
    timezone: str | None = None


# The device columns a claim returns, in Claimed's field order.
_CLAIMED_DEVICE = (
    _device.c.token,
    _device.c.platform,
    _device.c.locale,
    _device.c.apns_environment,
    _device.c.is_test_device,
    _device.c.status,
    _device.c.timezone,
)


def _claimable(campaign_id: uuid.UUID, now: datetime) -> ColumnElement[bool]:
    return and_(
        in_campaign(campaign_id),
        # Literal, as in ix_delivery_claimable_due's definition, and the due time as that
        # index's expression: the claim is a range of the index (the rows due by now), never
        # a walk over the rows that wait.
        text(f"delivery.{CLAIMABLE_PREDICATE}"),
        # Queued rows wait for their due time when they have one (a local time, the end of
        # quiet hours); retrying rows always have one.
        _claim_due_at <= now,
        or_(
            _delivery.c.status == DeliveryStatus.queued.value,
            _delivery.c.next_attempt_at.is_not(None),
        ),
    )


_claim_due_at = claim_due(_delivery)
# ix_delivery_claimable_due's order.
_claim_order = (_delivery.c.campaign_id, _claim_due_at, _delivery.c.id)


# Why a claimed row was not sent: its device left the campaign's audience after its wave was
# released (`claim(audience=...)` re-applies the audience at the claim).
LEFT_AUDIENCE = "left_audience"
DEVICE_INACTIVE = "device_inactive"
_IN_AUDIENCE = "in_audience"


def _verdict(
    audience: ColumnElement[bool], device_id: ColumnElement[uuid.UUID]
) -> ColumnElement[str]:
    """Per picked row, whether its device is still in the audience, or why not. A scalar
    subquery over the picked rows, so the audience's conditions (some of them over JSON,
    or long lists) are evaluated once per row, not once per column the claim sets."""
    verdict: ColumnElement[str] = (
        select(
            case(
                (audience, literal(_IN_AUDIENCE)),
                (_device.c.status != DeviceStatus.active.value, literal(DEVICE_INACTIVE)),
                else_=literal(LEFT_AUDIENCE),
            )
        )
        .where(_device.c.id == device_id)
        .scalar_subquery()
    )
    return verdict


async def claim(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID,
    limit: int,
    lease_token: uuid.UUID,
    lease_until: datetime,
    now: datetime,
    audience: ColumnElement[bool] | None = None,
) -> list[Claimed]:
    """Lease up to `limit` sendable rows of a running campaign: the rows due earliest, then in
    id order (rows due at once, a wave's members in the campaign's order, have no due time).

    On PostgreSQL concurrent claimers skip each other's rows (FOR UPDATE SKIP LOCKED); on
    SQLite the database-wide write lock serialises claims. Nothing is claimed while the
    campaign is not running or the global kill switch is engaged.

    `audience` is the campaign's audience as a predicate over the device table
    (`app.audiences.service.audience_filter(campaign.audience_rules, now=now)`). With it,
    a picked row whose device no longer matches is not leased: it becomes `cancelled` in
    the same statement, error_code `device_inactive` (the device is no longer active) or
    `left_audience` (it no longer matches the rules), and it is not an attempt. The claim
    then goes on to the next rows, so it returns nothing only when nothing claimable is
    left. Without it (None) every picked row is leased, as before.
    """
    postgresql = session.get_bind().dialect.name == "postgresql"
    # One statement, run again while a round only cancels: each round picks past the rows
    # the last one took or cancelled.
    stmt = claim_statement(
        campaign_id=campaign_id,
        limit=limit,
        lease_token=lease_token,
        lease_until=lease_until,
        now=now,
        audience=audience,
        postgresql=postgresql,
    )
    async with planned_by_index(session):
        while True:
            claimed, cancelled = await _claim_once(
                session, stmt, judged=audience is not None, postgresql=postgresql
            )
            if claimed or not cancelled:
                return claimed


# The planner's methods a claim never needs: its best plan is known whatever the statistics
# say (a range of ix_delivery_claimable_due read in its order up to the limit, then each
# picked row by its keys). The statistics of a campaign's partition lag its release: a month
# whose earlier campaigns are all sent looks as if a new campaign had a few hundred claimable
# rows, and the planner then sorts every one of them for each batch (a bitmap scan and an
# external merge sort of 44,000 rows, about 60 ms a claim, in the delivery benchmark), or
# joins the pick to the campaign's whole partition and to every device.
_CLAIM_PLANNER_OFF = (
    "enable_sort",
    "enable_bitmapscan",
    "enable_hashjoin",
    "enable_mergejoin",
    "enable_seqscan",
)
_PLANNER_SETTINGS = ", ".join(f"current_setting('{name}')" for name in _CLAIM_PLANNER_OFF)
_PLANNER_OFF = text(
    f"WITH before AS MATERIALIZED (SELECT {_PLANNER_SETTINGS}) SELECT before.*, "
    + ", ".join(f"set_config('{name}', 'off', true)" for name in _CLAIM_PLANNER_OFF)
    + " FROM before"
)
_PLANNER_BACK = text(
    "SELECT "
    + ", ".join(f"set_config('{name}', :s{i}, true)" for i, name in enumerate(_CLAIM_PLANNER_OFF))
)


@contextlib.asynccontextmanager
async def planned_by_index(session: AsyncSession) -> AsyncIterator[None]:
    """On PostgreSQL, the claim's statements are planned with sorts, bitmap scans, hash and
    merge joins and sequential scans off (`_CLAIM_PLANNER_OFF`), for this transaction only
    and given back as they were afterwards. SQLite plans by its indexes as it is."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    before = (await session.execute(_PLANNER_OFF)).one()
    # Given back only when the claim went through: after an error the transaction is rolled
    # back, and settings made for it with it.
    yield
    restore = {f"s{i}": before[i] for i in range(len(_CLAIM_PLANNER_OFF))}
    await session.execute(_PLANNER_BACK, restore)


def claim_statement(
    *,
    campaign_id: uuid.UUID,
    limit: int,
    lease_token: uuid.UUID,
    lease_until: datetime,
    now: datetime,
    audience: ColumnElement[bool] | None,
    postgresql: bool,
) -> Update:
    """The claim's one statement: pick up to `limit` claimable rows (skipping rows other
    claimers hold), then lease them, or cancel those whose device left the audience.

    On PostgreSQL the pick is a MATERIALIZED common table expression, and each picked row is
    updated through its primary key (id, ledger_month): the planner sees at most `limit` rows
    to update and joins them row by row to the ledger and to the device. As a subquery the
    pick was planned with the ledger's statistics, and after a campaign's release they led to
    a merge join over the campaign's whole partition and every device (50,000 rows walked
    for each batch of 388: about 110 ms a claim in the delivery benchmark, most of
    PostgreSQL's time during a campaign)."""
    picking = (
        select(_delivery.c.id, _delivery.c.ledger_month, _delivery.c.device_id)
        .where(_claimable(campaign_id, now))
        .order_by(*_claim_order)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )

    def kept(query: Select[Any], name: str) -> Subquery | CTE:
        return query.cte(name).prefix_with("MATERIALIZED") if postgresql else query.subquery(name)

    picked = kept(picking, "picked")
    if audience is not None:
        # Judged once each row is picked: the pick walks past the rows other claimers hold
        # (two for every one it takes, with four send jobs), and those need no verdict.
        judging = select(
            picked.c.id,
            picked.c.ledger_month,
            _verdict(audience, picked.c.device_id).label("verdict"),
        )
        picked = kept(judging, "judged")
    returned = (
        _delivery.c.id,
        _delivery.c.device_id,
        _delivery.c.wave,
        _delivery.c.attempts,
        _delivery.c.created_at,
    )
    values: dict[str, Any]
    if audience is None:
        values = {
            "status": DeliveryStatus.sending.value,
            "lease_token": lease_token,
            "lease_until": lease_until,
            "attempts": _delivery.c.attempts + 1,
        }
    else:
        sendable = picked.c.verdict == _IN_AUDIENCE
        values = {
            "status": case(
                (sendable, DeliveryStatus.sending.value),
                else_=DeliveryStatus.cancelled.value,
            ),
            "lease_token": case(
                (sendable, literal(lease_token, _delivery.c.lease_token.type)),
                else_=null(),
            ),
            "lease_until": case(
                (sendable, literal(lease_until, _delivery.c.lease_until.type)),
                else_=null(),
            ),
            "attempts": case((sendable, _delivery.c.attempts + 1), else_=_delivery.c.attempts),
            "error_code": case((sendable, _delivery.c.error_code), else_=picked.c.verdict),
            "error_detail": case(
                (sendable, _delivery.c.error_detail),
                (
                    picked.c.verdict == DEVICE_INACTIVE,
                    literal("the device is no longer active"),
                ),
                else_=literal("the device no longer matches the campaign's audience"),
            ),
        }
    stmt = (
        update(_delivery)
        .where(
            # By the primary key only: the pick holds the campaign's rows. A condition on the
            # campaign here lets the planner walk the campaign's rows for each picked one.
            _delivery.c.id == picked.c.id,
            _delivery.c.ledger_month == picked.c.ledger_month,
            may_send_clause(campaign_id),
        )
        .values(**values, updated_at=now)
        .returning(*returned)
    )
    if postgresql:
        # One round trip: the device's columns come back with the claimed rows.
        stmt = stmt.where(_delivery.c.device_id == _device.c.id).returning(*_CLAIMED_DEVICE)
    if audience is not None:
        stmt = stmt.returning(_delivery.c.status)
    return stmt


async def _claim_once(
    session: AsyncSession, stmt: Update, *, judged: bool, postgresql: bool
) -> tuple[list[Claimed], int]:
    """One run of the claim statement: the rows leased, and how many picked rows were
    cancelled (`judged`: the statement took the audience's verdict, its status comes last)."""
    rows = (await session.execute(stmt)).all()
    cancelled = 0
    if judged:
        leased = [r[:-1] for r in rows if r[-1] == DeliveryStatus.sending.value]
        cancelled = len(rows) - len(leased)
    else:
        leased = [tuple(r) for r in rows]
    leased.sort(key=lambda r: r[0])
    if postgresql:
        # RETURNING lists the columns in Claimed's field order.
        return [Claimed(*r) for r in leased], cancelled
    # SQLite's RETURNING sees only the updated table: read the devices in a second query.
    if not leased:
        return [], cancelled
    devices = {
        d[0]: d[1:]
        for d in (
            await session.execute(
                select(_device.c.id, *_CLAIMED_DEVICE).where(
                    _device.c.id.in_([r[1] for r in leased])
                )
            )
        ).all()
    }
    return [Claimed(*r, *devices[r[1]]) for r in leased], cancelled


async def failed_since(
    session: AsyncSession, campaign_id: uuid.UUID, wave: int, since: datetime
) -> int:
    """Rows of a wave that failed permanently at or after `since`."""
    query = (
        select(func.count())
        .select_from(_delivery)
        .where(
            in_campaign(campaign_id),
            _delivery.c.wave == wave,
            _delivery.c.status == DeliveryStatus.failed.value,
            _delivery.c.updated_at >= since,
        )
    )
    return int((await session.execute(query)).scalar_one())


def _campaign_stopped_for_good() -> ColumnElement[bool]:
    return stopped_for_good_clause(_delivery.c.campaign_id)


def _requeued_status() -> ColumnElement[str]:
    return case(
        (_campaign_stopped_for_good(), DeliveryStatus.cancelled.value),
        else_=DeliveryStatus.queued.value,
    )


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed row."""

    delivery_id: int
    status: DeliveryStatus
    provider: str | None = None
    message_id: str | None = None
    error_code: str | None = None
    error_detail: str | None = None
    next_attempt_at: datetime | None = None
    # Give the row back untouched (the gate closed before it was sent): it is not an attempt.
    # With `next_attempt_at` (held back by a provider's Retry-After block) it comes back as
    # retrying, due then; otherwise queued.
    give_back: bool = False
    # With `give_back` and `next_attempt_at`: back to the queue (not retrying), due then. The
    # row was not tried; it waits (the device's quiet hours).
    deferred: bool = False
    # An invalid token's provider timestamp (`SendResult.invalid_since`): the device is
    # deactivated only if it was last registered before then.
    invalid_since: datetime | None = None


async def record(
    session: AsyncSession,
    *,
    lease_token: uuid.UUID,
    outcomes: Sequence[Outcome],
    now: datetime,
) -> int:
    """Record outcomes under the lease that claimed the rows; returns rows updated."""
    if not outcomes:
        return 0
    returned = [o.delivery_id for o in outcomes if o.give_back and o.next_attempt_at is None]
    deferred: dict[tuple[datetime, bool], list[int]] = {}
    for o in outcomes:
        if o.give_back and o.next_attempt_at is not None:
            deferred.setdefault((o.next_attempt_at, o.deferred), []).append(o.delivery_id)
    outcomes = [o for o in outcomes if not o.give_back]
    updated = await _give_back(session, lease_token, returned, now) if returned else 0
    for (due, waits), ids in deferred.items():
        updated += await _give_back(session, lease_token, ids, now, due=due, waits=waits)
    if not outcomes:
        return updated
    if session.get_bind().dialect.name == "postgresql":
        updated += await _record_postgresql(session, lease_token, outcomes, now)
    else:
        updated += await _record_each(session, lease_token, outcomes, now)
    invalid = [o for o in outcomes if o.status is DeliveryStatus.invalid_token]
    if invalid:
        await deactivate_devices(session, invalid, now)
    retrying = [o.delivery_id for o in outcomes if o.status is DeliveryStatus.retrying]
    if retrying:
        await _cancel_if_stopped(session, retrying, now)
    return updated


async def _cancel_if_stopped(session: AsyncSession, ids: list[int], now: datetime) -> None:
    """Rows that were on the wire when their campaign was killed or cancelled, and came back
    as retries, are cancelled: nothing would ever claim them again."""
    await session.execute(
        update(_delivery)
        .where(
            by_ids(session, ids),
            _delivery.c.status == DeliveryStatus.retrying.value,
            _campaign_stopped_for_good(),
        )
        .values(status=DeliveryStatus.cancelled.value, updated_at=now)
    )


async def _record_each(
    session: AsyncSession, lease_token: uuid.UUID, outcomes: Sequence[Outcome], now: datetime
) -> int:
    stmt = (
        update(_delivery)
        .where(
            _delivery.c.id == bindparam("b_id"),
            _delivery.c.lease_token == lease_token,
            _delivery.c.status == DeliveryStatus.sending.value,
        )
        .values(
            status=bindparam("b_status"),
            provider=bindparam("b_provider"),
            provider_message_id=bindparam("b_message_id"),
            error_code=bindparam("b_error_code"),
            error_detail=bindparam("b_error_detail"),
            next_attempt_at=bindparam("b_next", type_=_delivery.c.next_attempt_at.type),
            sent_at=bindparam("b_sent_at", type_=_delivery.c.sent_at.type),
            lease_token=None,
            lease_until=None,
            updated_at=now,
        )
    )
    params: list[dict[str, Any]] = [
        {
            "b_id": o.delivery_id,
            "b_status": o.status.value,
            "b_provider": o.provider,
            "b_message_id": o.message_id,
            "b_error_code": o.error_code,
            "b_error_detail": o.error_detail[:2000] if o.error_detail else None,
            "b_next": o.next_attempt_at,
            "b_sent_at": now if o.status is DeliveryStatus.sent else None,
        }
        for o in outcomes
    ]
    result = await session.execute(stmt, params)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# The same update as `record`'s statement, for a whole batch in one statement: the outcomes
# travel as one array per column (asyncpg encodes them natively), instead of one parameter
# set per row.
_RECORD_ARRAYS = text(
    """
    UPDATE delivery AS d SET
        status = v.status,
        provider = v.provider,
        provider_message_id = v.message_id,
        error_code = v.error_code,
        error_detail = v.error_detail,
        next_attempt_at = v.next_attempt_at,
        sent_at = CASE WHEN v.status = 'sent' THEN CAST(:now AS timestamptz) END,
        lease_token = NULL,
        lease_until = NULL,
        updated_at = CAST(:now AS timestamptz)
    FROM unnest(
        CAST(:ids AS bigint[]),
        CAST(:statuses AS varchar[]),
        CAST(:providers AS varchar[]),
        CAST(:message_ids AS varchar[]),
        CAST(:error_codes AS varchar[]),
        CAST(:error_details AS text[]),
        CAST(:next_attempts AS timestamptz[])
    ) AS v(id, status, provider, message_id, error_code, error_detail, next_attempt_at)
    WHERE d.id = v.id AND d.ledger_month = ANY(CAST(:months AS integer[]))
      AND d.lease_token = :lease AND d.status = 'sending'
    """
).bindparams(
    bindparam("ids", type_=ARRAY(BigInteger)),
    bindparam("months", type_=ARRAY(Integer)),
    bindparam("statuses", type_=ARRAY(String)),
    bindparam("providers", type_=ARRAY(String)),
    bindparam("message_ids", type_=ARRAY(String)),
    bindparam("error_codes", type_=ARRAY(String)),
    bindparam("error_details", type_=ARRAY(Text)),
    bindparam("next_attempts", type_=ARRAY(DateTime(timezone=True))),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("lease", type_=Uuid),
)


async def _record_postgresql(
    session: AsyncSession, lease_token: uuid.UUID, outcomes: Sequence[Outcome], now: datetime
) -> int:
    result = await session.execute(
        _RECORD_ARRAYS,
        {
            "ids": [o.delivery_id for o in outcomes],
            # The partitions the rows live in (a row id names its month).
            "months": partitions.months_of_refs(o.delivery_id for o in outcomes),
            "statuses": [o.status.value for o in outcomes],
            "providers": [o.provider for o in outcomes],
            "message_ids": [o.message_id for o in outcomes],
            "error_codes": [o.error_code for o in outcomes],
            "error_details": [o.error_detail[:2000] if o.error_detail else None for o in outcomes],
            "next_attempts": [o.next_attempt_at for o in outcomes],
            "now": now,
            "lease": lease_token,
        },
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def _give_back(
    session: AsyncSession,
    lease_token: uuid.UUID,
    ids: list[int],
    now: datetime,
    *,
    due: datetime | None = None,
    waits: bool = False,
) -> int:
    """Rows claimed but never sent go back as they were (the claim is not an attempt), or
    become cancelled when their campaign was killed or cancelled meanwhile. With `due` they
    come back retrying (or, with `waits`, queued: they were never tried), claimable from then
    on."""
    status = _requeued_status()
    values: dict[str, Any] = {}
    if due is not None:
        status = case(
            (_campaign_stopped_for_good(), DeliveryStatus.cancelled.value),
            else_=(DeliveryStatus.queued if waits else DeliveryStatus.retrying).value,
        )
        values["next_attempt_at"] = due
    result = await session.execute(
        update(_delivery)
        .where(
            by_ids(session, ids),
            _delivery.c.lease_token == lease_token,
            _delivery.c.status == DeliveryStatus.sending.value,
        )
        .values(
            status=status,
            attempts=_delivery.c.attempts - 1,
            lease_token=None,
            lease_until=None,
            updated_at=now,
            **values,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def deactivate_devices(
    session: AsyncSession, outcomes: Iterable[Outcome], now: datetime
) -> None:
    """A provider said the token is dead: stop every campaign from trying it again. When it
    said since when (APNs 410's timestamp), a device registered again after that instant
    keeps its token: the app handed it over anew, so the answer is older than the token's
    registration."""
    dead_now = [o.delivery_id for o in outcomes if o.invalid_since is None]
    dated = [o for o in outcomes if o.invalid_since is not None]
    if dead_now:
        ids = select(_delivery.c.device_id).where(by_ids(session, dead_now))
        await session.execute(
            update(_device)
            .where(_device.c.id.in_(ids))
            .values(status=DeviceStatus.invalid.value, updated_at=now)
        )
    for outcome in dated:
        device = select(_delivery.c.device_id).where(by_ids(session, [outcome.delivery_id]))
        await session.execute(
            update(_device)
            .where(_device.c.id.in_(device), _device.c.last_seen_at < outcome.invalid_since)
            .values(status=DeviceStatus.invalid.value, updated_at=now)
        )


async def reclaim_expired(session: AsyncSession, *, now: datetime, max_attempts: int) -> int:
    """Rows whose lease ran out (their worker died or hung) go back to the queue, or fail
    once they have used their attempts: nothing is lost and nothing is retried forever."""
    exhausted = _delivery.c.attempts >= max_attempts
    result = await session.execute(
        update(_delivery)
        .where(_delivery.c.status == DeliveryStatus.sending.value, _delivery.c.lease_until < now)
        .values(
            status=case((exhausted, DeliveryStatus.failed.value), else_=_requeued_status()),
            error_code=case((exhausted, "lease_expired"), else_=_delivery.c.error_code),
            error_detail=case(
                (exhausted, "the worker sending this row stopped answering too many times"),
                else_=_delivery.c.error_detail,
            ),
            lease_token=None,
            lease_until=None,
            updated_at=now,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def cancel_open(
    session: AsyncSession, campaign_id: uuid.UUID, *, now: datetime, reason: str
) -> int:
    """Queued and retrying rows of a stopped campaign become `cancelled`. Rows in `sending`
    are on the wire: their worker records what the provider answered."""
    result = await session.execute(
        update(_delivery)
        .where(
            in_campaign(campaign_id),
            _delivery.c.status.in_([DeliveryStatus.queued.value, DeliveryStatus.retrying.value]),
        )
        .values(
            status=DeliveryStatus.cancelled.value,
            error_code=reason,
            lease_token=None,
            lease_until=None,
            updated_at=now,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def counts_by_wave(
    session: AsyncSession, campaign_id: uuid.UUID
) -> dict[int, dict[str, int]]:
    """Rows per wave and status; for a pruned campaign, as the ledger held them when it was
    pruned (its summary)."""
    pruned = await summaries(session, campaign_id)
    if pruned:
        return {wave: dict(s.counts) for wave, s in pruned.items()}
    rows = (
        await session.execute(
            select(_delivery.c.wave, _delivery.c.status, func.count())
            .where(in_campaign(campaign_id))
            .group_by(_delivery.c.wave, _delivery.c.status)
        )
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for wave, status, n in rows:
        counts.setdefault(wave, {})[status] = int(n)
    return counts


async def has_claimable(session: AsyncSession, campaign_id: uuid.UUID, now: datetime) -> bool:
    # In the claim's order, so the first row of ix_delivery_claimable_due's range answers: the
    # planner expects a third of the rows to be due and would otherwise scan the table for
    # one, every row of a waiting local-time backlog when none is.
    query = (
        select(_delivery.c.id).where(_claimable(campaign_id, now)).order_by(*_claim_order).limit(1)
    )
    return (await session.execute(query)).first() is not None


async def page(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    *,
    limit: int,
    after: int | None,
    status: DeliveryStatus | None,
    wave: int | None,
) -> Sequence[Delivery]:
    query = (
        select(Delivery)
        .where(col(Delivery.campaign_id) == campaign_id)
        .order_by(col(Delivery.id))
        .limit(limit)
    )
    if after is not None:
        query = query.where(col(Delivery.id) > after)
    if status is not None:
        query = query.where(col(Delivery.status) == status.value)
    if wave is not None:
        query = query.where(col(Delivery.wave) == wave)
    return list((await session.execute(query)).scalars().all())


@dataclass(frozen=True)
class WaveSummary:
    """A pruned campaign's wave (ledger_wave_summary)."""

    counts: dict[str, int]
    received: int
    opened: int
    converted: int
    # Seconds from send to open, p50 and p90; None when nothing sent was opened.
    time_to_open: tuple[float, float] | None


async def summaries(session: AsyncSession, campaign_id: uuid.UUID) -> dict[int, WaveSummary]:
    """The kept figures of a pruned campaign's waves; empty while its ledger is whole."""
    rows = await session.execute(
        select(
            _summary.c.wave,
            _summary.c.counts,
            _summary.c.received,
            _summary.c.opened,
            _summary.c.converted,
            _summary.c.time_to_open_p50,
            _summary.c.time_to_open_p90,
        ).where(_summary.c.campaign_id == campaign_id)
    )
    return {
        wave: WaveSummary(
            counts={str(k): int(v) for k, v in counts.items()},
            received=int(received),
            opened=int(opened),
            converted=int(converted),
            time_to_open=None if p50 is None or p90 is None else (float(p50), float(p90)),
        )
        for wave, counts, received, opened, converted, p50, p90 in rows
    }
