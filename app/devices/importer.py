"""Bulk device import from NDJSON, streamed.

The body is read chunk by chunk and committed batch by batch, so memory stays flat for any
file size and one bad line costs only that line: it is reported with its line number and
every good line around it is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.session import unit_of_work
from app.devices import lean
from app.devices import service as devices_service
from app.devices.schemas import DeviceRegistration, ImportRejection, ImportResult
from app.errors import describe
from app.ops.nul_guard import has_nul_escape, unstorable_fields

BATCH_ROWS = 10_000
# Batches in flight at once on PostgreSQL, each on its own connection (see import_stream).
WRITERS = 2
# Lines parsed between two chances for the write task to run (a few milliseconds).
PARSE_ROWS = 200
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


async def line_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[tuple[int, bytes]]]:
    """Split a byte stream into numbered non-blank lines, one list per chunk, without ever
    holding more than one chunk (and one line) in memory. Blank lines are counted."""
    pending = b""
    number = 0
    async for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        numbered = []
        for line in complete:
            number += 1
            if line and not line.isspace():
                numbered.append((number, line))
        if len(pending) > MAX_LINE_BYTES:
            # Swallow the overlong line up to its end without keeping it.
            number += 1
            numbered.append((number, OVERLONG))
            async for more in chunks:
                if b"\n" in more:
                    pending = more.split(b"\n", 1)[1]
                    break
            else:
                pending = b""
        yield numbered
    if pending.strip():
        yield [(number + 1, pending)]


def check_line(raw: bytes, number: int, progress: _Progress) -> lean.Values | None:
    """A line's registration values, or None after reporting why the line was rejected.

    The lean check accepts the ordinary line; anything else goes to the model, which is
    the contract and words every rejection."""
    # PostgreSQL cannot store NUL; such a line goes to the model path, which names the field.
    values = None if has_nul_escape(raw) else lean.parse(raw)
    if values is not None:
        return values
    try:
        return lean.from_model(parse_line(raw))
    except ValidationError as exc:
        progress.reject(number, describe_validation_error(exc))
    except ValueError as exc:
        progress.reject(number, str(exc))
    return None


def parse_line(raw: bytes) -> DeviceRegistration:
    if raw == OVERLONG:
        raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
    # Text no database can store (a NUL, a lone surrogate) is named here as the API's other
    # routes name it; the model's own parser refuses a lone surrogate only as invalid JSON.
    unstorable = unstorable_fields(raw)
    if unstorable:
        raise ValueError("; ".join(f"{e['field']}: {e['message']}" for e in unstorable))
    return DeviceRegistration.model_validate_json(raw)


async def import_stream(
    sessionmaker: async_sessionmaker[AsyncSession], chunks: AsyncIterator[bytes]
) -> ImportResult:
    progress = _Progress()
    copy = sessionmaker.kw["bind"].dialect.name == "postgresql"
    # Batches are written while the next lines are parsed: parsing is this process's work
    # and the merge is the database's, so overlapping them uses both cores. On PostgreSQL
    # the tokens are split between WRITERS lanes, each with one batch in flight on its own
    # connection: a token always takes the same lane, so its registrations are stored in
    # file order (the last one wins), and two lanes never wait on each other's rows.
    lanes = WRITERS if copy else 1
    batches = [devices_service.ImportBatch(copy=copy) for _ in range(lanes)]
    writing: list[asyncio.Task[None] | None] = [None] * lanes

    async def write(full: devices_service.ImportBatch) -> None:
        async with unit_of_work(sessionmaker) as session:
            outcome = await full.write(session)
        progress.created += outcome.created
        progress.updated += outcome.updated

    async def flush(lane: int) -> None:
        previous = writing[lane]
        if previous is not None:
            writing[lane] = None
            await previous
        if len(batches[lane]):
            writing[lane] = asyncio.create_task(write(batches[lane]))
            batches[lane] = devices_service.ImportBatch(copy=copy)

    try:
        async for numbered in line_batches(chunks):
            for start in range(0, len(numbered), PARSE_ROWS):
                for number, raw in numbered[start : start + PARSE_ROWS]:
                    values = check_line(raw, number, progress)
                    if values is not None:
                        batches[hash(values[0]) % lanes].add(values)
                for lane in range(lanes):
                    if len(batches[lane]) >= BATCH_ROWS:
                        await flush(lane)
                # Parsing never awaits; yield so the writes can take the database's answers
                # and send their next messages (a batch is a handful of round trips, each
                # waiting for this loop: a megabyte of lines parsed in one go made each wait
                # 40 ms).
                await asyncio.sleep(0)
        for lane in range(lanes):
            await flush(lane)
        for task in writing:
            if task is not None:
                await task
    finally:
        # On a failure, the batches already sent finish (each commits or rolls back as a
        # whole) before the error is answered, so what the answer reports is what is stored.
        await asyncio.gather(
            *(task for task in writing if task is not None), return_exceptions=True
        )
    return ImportResult(
        created=progress.created,
        updated=progress.updated,
        rejected=progress.rejected,
        rejected_total=progress.rejected_total,
    )
