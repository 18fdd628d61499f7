"""Device registration, changes and test-device marking."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audiences import service as audiences
from app.audiences.versions import version_key
from app.audit import service as audit
from app.auth.principal import Principal
from app.db.types import utcnow
from app.devices import lean
from app.devices import repository as repo
from app.devices.models import Device, DeviceStatus
from app.devices.schemas import (
    DeviceOut,
    DevicePatch,
    DeviceRegistration,
    check_apns_environment,
)
from app.errors import FieldError, not_found, validation_problem
from app.rollout.bucketing import device_bucket


def new_device_ids(count: int) -> list[bytes]:
    """The 16 bytes of `count` UUIDv7s: time-ordered, so a bulk import appends to the
    primary-key index instead of touching a random page per row. The bucket is a hash of
    the id, so waves stay uniform."""
    millis = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    stamp = millis.to_bytes(6, "big")
    noise = os.urandom(10 * count)
    ids = []
    for start in range(0, 10 * count, 10):
        # Version 7 in the high nibble of byte 6; the RFC 4122 variant in byte 8.
        head = bytes(
            (0x70 | (noise[start] & 0x0F), noise[start + 1], 0x80 | (noise[start + 2] & 0x3F))
        )
        ids.append(stamp + head + noise[start + 3 : start + 10])
    return ids


def new_device_id() -> uuid.UUID:
    return uuid.UUID(bytes=new_device_ids(1)[0])


def registration_row(reg: DeviceRegistration, now: datetime | None = None) -> dict[str, Any]:
    """The full row a registration proposes; on an existing token only some columns apply."""
    return values_row(lean.from_model(reg), now)


def values_row(values: lean.Values, now: datetime | None = None) -> dict[str, Any]:
    """`registration_row` of a registration's checked values (see app.devices.lean)."""
    token, platform, user_id, locale, timezone, version, tags, attributes, environment = values
    device_id = new_device_id()
    now = now or utcnow()
    return {
        "id": device_id,
        "token": token,
        "platform": platform,
        "user_id": user_id,
        "locale": locale,
        "timezone": timezone,
        "app_version": version,
        "app_version_key": version_key(version) if version else None,
        "tags": list(dict.fromkeys(tags)),
        "attributes": attributes,
        "apns_environment": environment,
        "is_test_device": False,
        "status": DeviceStatus.active.value,
        "bucket": device_bucket(device_id),
        "last_seen_at": now,
        "created_at": now,
        "updated_at": now,
    }


@dataclass(frozen=True)
class UpsertOutcome:
    created: int
    updated: int


async def register_many(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> UpsertOutcome:
    """Upsert rows whose tokens are distinct."""
    created = await repo.upsert_bulk(session, rows)
    return UpsertOutcome(created=created, updated=len(rows) - created)


# Ids drawn at a time by an import batch that encodes for COPY.
_ID_DRAW = 1_000


class ImportBatch:
    """Checked registrations on their way to one write, one per token: a token seen again
    replaces its earlier registration, as it would have updated it.

    For COPY (PostgreSQL) each registration is encoded as it is added, so the write only
    sends what is ready and the database never waits on this process to encode a batch."""

    def __init__(self, *, copy: bool) -> None:
        self._copy = copy
        self._rows: dict[str, Any] = {}
        self._ids: list[bytes] = []
        self.repeats = 0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, values: lean.Values) -> None:
        token = values[0]
        if token in self._rows:
            self.repeats += 1
        if not self._copy:
            self._rows[token] = values
            return
        if not self._ids:
            self._ids = new_device_ids(_ID_DRAW)
        self._rows[token] = repo.copy_line(values, self._ids.pop())

    async def write(self, session: AsyncSession) -> UpsertOutcome:
        """Upsert the batch; a repeated token counts as updated once per repeat."""
        if self._copy:
            created = await repo.merge_copy_text(session, repo.copy_text(self._rows.values()))
            outcome = UpsertOutcome(created=created, updated=len(self._rows) - created)
        else:
            now = utcnow()
            outcome = await register_many(
                session, [values_row(v, now) for v in self._rows.values()]
            )
        return UpsertOutcome(created=outcome.created, updated=outcome.updated + self.repeats)


async def register(
    db: AsyncSession | AsyncConnection, reg: DeviceRegistration
) -> tuple[DeviceOut, bool]:
    """The device as stored for this registration, and whether it is new: one statement,
    read back by RETURNING (no ORM object: the answer is all a registration needs). `db`:
    the API's one-write connection (`app.deps.writing`), or a session."""
    stored, created = await repo.upsert_one(db, registration_row(reg))
    return DeviceOut.model_validate(stored), created


async def get(session: AsyncSession, device_id: uuid.UUID) -> Device:
    device = await repo.get(session, device_id)
    if device is None:
        raise not_found("Device", device_id)
    return device


async def update(session: AsyncSession, device_id: uuid.UUID, patch: DevicePatch) -> Device:
    device = await get(session, device_id)
    changes = patch.model_dump(exclude_unset=True)
    if "apns_environment" in changes or device.platform == "ios":
        try:
            check_apns_environment(
                device.platform,
                changes.get("apns_environment", device.apns_environment),
                present=True,
            )
        except ValueError as exc:
            raise validation_problem([FieldError("apns_environment", str(exc))]) from None
    if "app_version" in changes:
        device.app_version_key = (
            version_key(changes["app_version"]) if changes["app_version"] else None
        )
    for name, value in changes.items():
        if name == "tags" and value is not None:
            value = list(dict.fromkeys(value))
        if value is None and name in {"tags", "attributes"}:
            value = [] if name == "tags" else {}
        setattr(device, name, value)
    device.updated_at = utcnow()
    session.add(device)
    await session.flush()
    return device


async def unregister(session: AsyncSession, device_id: uuid.UUID) -> Device:
    """Stop sending to a device. The row stays: the delivery ledger still points at it."""
    device = await get(session, device_id)
    device.status = DeviceStatus.unregistered
    device.updated_at = utcnow()
    session.add(device)
    await session.flush()
    return device


async def set_test_device(
    session: AsyncSession,
    principal: Principal,
    device_id: uuid.UUID,
    *,
    is_test: bool,
    reason: str | None,
) -> Device:
    device = await get(session, device_id)
    before = device.is_test_device
    if before != is_test:
        device.is_test_device = is_test
        device.updated_at = utcnow()
        session.add(device)
        audit.record(
            session,
            principal,
            "device.test_marked" if is_test else "device.test_unmarked",
            subject_type="device",
            subject_id=device.id,
            reason=reason,
            before={"is_test_device": before},
            after={"is_test_device": is_test},
        )
        await session.flush()
    return device


# The most devices one bulk marking may change: a QA fleet is far smaller, and a selector
# that matches more is a mistake (a rule that was meant to be narrower).
MAX_BULK_TEST_MARKS = 10_000


@dataclass(frozen=True)
class BulkMarking:
    matched: int
    changed: int


async def set_test_devices(
    session: AsyncSession,
    principal: Principal,
    *,
    segment_id: uuid.UUID | None,
    rules: Any,
    tokens: Sequence[str] | None,
    is_test: bool,
    reason: str,
) -> BulkMarking:
    """Mark (or unmark) many QA devices at once, chosen by a segment, by audience rules or by
    token; one audit event names the selector, the counts and the reason. Refused, changing
    nothing, when the selector matches more than MAX_BULK_TEST_MARKS devices."""
    selector: dict[str, Any]
    if tokens is not None:
        where: Any = col(Device.token).in_(list(tokens))
        selector = {"tokens": len(tokens)}
    else:
        resolved, segment = await audiences.resolve(
            session, segment_id=segment_id, rules=rules, field="rules"
        )
        where = audiences.audience_filter(resolved, now=utcnow())
        selector = {"segment_id": str(segment)} if segment else {"rules": resolved}
    matched = await repo.count_matching(session, where)
    if is_test and matched > MAX_BULK_TEST_MARKS:
        raise validation_problem(
            [
                FieldError(
                    "tokens" if tokens is not None else ("segment_id" if segment_id else "rules"),
                    f"matches {matched} devices; one marking may change at most "
                    f"{MAX_BULK_TEST_MARKS} (a QA fleet is smaller): narrow the selector",
                )
            ],
            title="Too many devices to mark as test devices",
        )
    changed = await repo.set_test_device_where(session, where, is_test=is_test, now=utcnow())
    audit.record(
        session,
        principal,
        "device.test_marked_bulk" if is_test else "device.test_unmarked_bulk",
        subject_type="device",
        subject_id=None,
        reason=reason,
        after={
            "selector": selector,
            "is_test_device": is_test,
            "matched": matched,
            "changed": changed,
        },
    )
    await session.flush()
    return BulkMarking(matched=matched, changed=changed)


# A page of devices (the router's listing; the query is the repository's).
list_devices = repo.list_devices
