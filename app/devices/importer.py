"""Bulk device import from NDJSON, streamed.

The body is read chunk by chunk and committed batch by batch, so memory stays flat for any
file size and one bad line costs only that line: it is reported with its line number and
every good line around it is stored.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.session import unit_of_work
from app.devices import service as devices_service
from app.devices.schemas import DeviceRegistration, ImportRejection, ImportResult

BATCH_ROWS = 10_000
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
        msg = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "")
        parts.append(f"{loc}: {msg}")
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
            yield number, b"\x00overlong"
            async for more in chunks:
                if b"\n" in more:
                    pending = more.split(b"\n", 1)[1]
                    break
            else:
                pending = b""
    if pending.strip():
        yield number + 1, pending


def parse_line(raw: bytes) -> DeviceRegistration:
    if raw == b"\x00overlong":
        raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
    return DeviceRegistration.model_validate_json(raw)


async def import_stream(
    sessionmaker: async_sessionmaker[AsyncSession], chunks: AsyncIterator[bytes]
) -> ImportResult:
    progress = _Progress()
    batch: dict[str, dict[str, Any]] = {}
    repeats = 0

    async def flush() -> None:
        nonlocal repeats
        if not batch:
            return
        async with unit_of_work(sessionmaker) as session:
            outcome = await devices_service.register_many(session, list(batch.values()))
        progress.created += outcome.created
        # A token repeated inside one batch is one row, registered and then updated.
        progress.updated += outcome.updated + repeats
        batch.clear()
        repeats = 0

    async for number, raw in lines(chunks):
        if not raw.strip():
            continue
        try:
            reg = parse_line(raw)
        except ValidationError as exc:
            progress.reject(number, describe_validation_error(exc))
            continue
        except (ValueError, json.JSONDecodeError) as exc:
            progress.reject(number, str(exc))
            continue
        if reg.token in batch:
            repeats += 1
        batch[reg.token] = devices_service.registration_row(reg)
        if len(batch) >= BATCH_ROWS:
            await flush()
    await flush()
    return ImportResult(
        created=progress.created,
        updated=progress.updated,
        rejected=progress.rejected,
        rejected_total=progress.rejected_total,
    )
