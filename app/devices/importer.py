"""Bulk device import from NDJSON, streamed.

The body is read chunk by chunk and committed batch by batch, so memory stays flat for any
file size and one bad line costs only that line: it is reported with its line number and
every good line around it is stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.session import unit_of_work
from app.db.types import utcnow
from app.devices import service as devices_service
from app.devices.schemas import DeviceRegistration, ImportRejection, ImportResult
from app.errors import describe
from app.ops.nul_guard import MESSAGE as NUL_MESSAGE
from app.ops.nul_guard import has_nul_escape, nul_fields

BATCH_ROWS = 10_000
PARSE_ROWS = 1_000
# Stands in for a line that was too long to keep; never valid JSON, so never a device.
OVERLONG = b"\x00overlong"
MAX_LINE_BYTES = 64 * 1024
# Enough rejections to fix a file; the total is always reported.
MAX_REPORTED_REJECTIONS = 1_000


@dataclass
class _Progress:
    created: int = 0
    updated: int = 0
    rejected: list[ImportRejection] = field(default_factory=list)
    rejected_total: int = 0

    def reject(self, line: int, error: str) -> None:
        self.rejected_total += 1
        if len(self.rejected) < MAX_REPORTED_REJECTIONS:
            self.rejected.append(ImportRejection(line=line, error=error))


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "line"
        parts.append(f"{loc}: {describe(err)}")
    return "; ".join(parts)


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """Split a byte stream into numbered lines without ever holding more than one chunk."""
    pending = b""
    number = 0
    async for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            number += 1
            yield number, line
        if len(pending) > MAX_LINE_BYTES:
            # Swallow the overlong line up to its end without keeping it.
            number += 1
            yield number, OVERLONG
            async for more in chunks:
                if b"\n" in more:
                    pending = more.split(b"\n", 1)[1]
                    break
            else:
                pending = b""
    if pending.strip():
        yield number + 1, pending


_MANY = TypeAdapter(list[DeviceRegistration])


def parse_many(
    numbered: list[tuple[int, bytes]], progress: _Progress
) -> list[tuple[int, DeviceRegistration]]:
    """Validate many lines at once; only when that fails is each line validated alone.

    Joining lines into one JSON array lets pydantic-core validate them in one call. A line
    holding two values (`{...}, {...}`) would shift the others, so the count must match.
    """
    if not numbered:
        return []
    if all(raw != OVERLONG and not has_nul_escape(raw) for _, raw in numbered):
        try:
            regs = _MANY.validate_json(b"[" + b",".join(raw for _, raw in numbered) + b"]")
        except ValidationError:
            pass
        else:
            if len(regs) == len(numbered):
                return [(number, reg) for (number, _), reg in zip(numbered, regs, strict=True)]
    parsed = []
    for number, raw in numbered:
        try:
            parsed.append((number, parse_line(raw)))
        except ValidationError as exc:
            progress.reject(number, describe_validation_error(exc))
        except ValueError as exc:
            progress.reject(number, str(exc))
    return parsed


def parse_line(raw: bytes) -> DeviceRegistration:
    if raw == OVERLONG:
        raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
    if has_nul_escape(raw):
        try:
            paths = nul_fields(json.loads(raw))
        except ValueError:
            paths = []  # not JSON: pydantic says so below
        if paths:
            raise ValueError(f"{', '.join(paths)}: {NUL_MESSAGE}")
    return DeviceRegistration.model_validate_json(raw)


async def import_stream(
    sessionmaker: async_sessionmaker[AsyncSession], chunks: AsyncIterator[bytes]
) -> ImportResult:
    progress = _Progress()
    batch: dict[str, dict[str, Any]] = {}
    repeats = 0
    # One batch is written while the next is parsed: parsing is this process's work and the
    # upsert is the database's, so overlapping them uses both cores.
    writing: asyncio.Task[None] | None = None

    async def write(rows: list[dict[str, Any]], repeated: int) -> None:
        async with unit_of_work(sessionmaker) as session:
            outcome = await devices_service.register_many(session, rows)
        progress.created += outcome.created
        # A token repeated inside one batch is one row, registered and then updated.
        progress.updated += outcome.updated + repeated

    async def flush() -> None:
        nonlocal repeats, writing, batch
        if writing is not None:
            await writing
            writing = None
        if batch:
            writing = asyncio.create_task(write(list(batch.values()), repeats))
            batch = {}
            repeats = 0

    now = utcnow()
    pending: list[tuple[int, bytes]] = []

    async def take(parsed: list[tuple[int, DeviceRegistration]]) -> None:
        nonlocal repeats
        # Parsing never awaits; yield here so the write task can send its COPY and merge,
        # which the database then runs while this loop parses the next lines.
        await asyncio.sleep(0)
        for _number, reg in parsed:
            if reg.token in batch:
                repeats += 1
            batch[reg.token] = devices_service.registration_row(reg, now)
        if len(batch) >= BATCH_ROWS:
            await flush()

    async for number, raw in lines(chunks):
        if not raw.strip():
            continue
        pending.append((number, raw))
        if len(pending) >= PARSE_ROWS:
            await take(parse_many(pending, progress))
            pending = []
    await take(parse_many(pending, progress))
    await flush()
    if writing is not None:
        await writing
    return ImportResult(
        created=progress.created,
        updated=progress.updated,
        rejected=progress.rejected,
        rejected_total=progress.rejected_total,
    )
