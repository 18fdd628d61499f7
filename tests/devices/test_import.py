from __future__ import annotations

import json

import httpx
from sqlalchemy import func
from sqlmodel import select

from app.auth.models import Scope
from app.devices import importer
from app.devices.models import Device
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer


def ndjson(rows: list[object]) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows)


async def test_import_keeps_good_lines_and_reports_bad_ones(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = bearer(await make_key(Scope.devices_write))
    await client.post(
        "/v1/devices", json={"token": "existing", "platform": "android"}, headers=headers
    )
    body = ndjson(
        [
            {"token": "a1", "platform": "android", "locale": "pl-PL"},
            {"token": "a2", "platform": "windows"},  # line 2: bad platform
            b"{not json",  # line 3
            {"token": "existing", "platform": "android", "app_version": "2.0"},
            {"token": "i1", "platform": "ios"},  # line 5: no apns_environment
            b"",  # blank lines are skipped, but still counted
            {"token": "i2", "platform": "ios", "apns_environment": "sandbox"},
            {"token": "a3", "platform": "android", "is_test_device": True},  # line 8
            {"token": "a1", "platform": "android", "locale": "de-DE"},  # repeat of line 1
        ]
    )
    answer = await client.post(
        "/v1/devices/import",
        content=body,
        headers={**headers, "content-type": "application/x-ndjson"},
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["created"] == 2  # a1, i2
    assert result["updated"] == 2  # existing, and a1 again
    assert [r["line"] for r in result["rejected"]] == [2, 3, 5, 8]
    assert result["rejected_total"] == 4
    assert "platform" in result["rejected"][0]["error"]
    assert "is_test_device" in result["rejected"][3]["error"]

    async with db.sessionmaker() as session:
        rows = {d.token: d for d in (await session.exec(select(Device))).all()}
    assert set(rows) == {"existing", "a1", "i2"}
    assert rows["a1"].locale == "de-DE"
    assert rows["existing"].app_version == "2.0"
    assert not any(d.is_test_device for d in rows.values())


async def test_import_streams_many_batches(db: Runtime) -> None:
    total = importer.BATCH_ROWS * 2 + 17

    async def chunks():  # type: ignore[no-untyped-def]
        # Uneven chunk boundaries split lines in the middle.
        buffer = ndjson([{"token": f"tok-{i}", "platform": "android"} for i in range(total)])
        for start in range(0, len(buffer), 7777):
            yield buffer[start : start + 7777]

    result = await importer.import_stream(db.sessionmaker, chunks())
    assert result.created == total
    assert result.rejected == []
    async with db.sessionmaker() as session:
        count = (await session.exec(select(func.count()).select_from(Device))).one()
    assert count == total


async def test_overlong_line_is_rejected_alone(db: Runtime) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield ndjson([{"token": "before", "platform": "android"}]) + b"\n"
        yield b'{"token": "' + b"x" * (importer.MAX_LINE_BYTES + 10)
        yield b'", "platform": "android"}\n'
        yield ndjson([{"token": "after", "platform": "android"}])

    result = await importer.import_stream(db.sessionmaker, chunks())
    assert result.created == 2
    assert [r.line for r in result.rejected] == [2]
    assert "longer than" in result.rejected[0].error


async def test_a_token_repeated_across_batches_keeps_its_last_line(db: Runtime) -> None:
    # Three passes over the same tokens, each pass in batches of its own: whatever lane or
    # connection a batch is written on, every token ends with its last line's values.
    tokens = importer.BATCH_ROWS + 1  # odd: a token's lines alternate between odd and even
    lines = [
        {"token": f"tok-{i % tokens}", "platform": "android", "user_id": f"pass-{i // tokens}"}
        for i in range(3 * tokens)
    ]

    async def chunks():  # type: ignore[no-untyped-def]
        buffer = ndjson(lines)
        for start in range(0, len(buffer), 65536):
            yield buffer[start : start + 65536]

    result = await importer.import_stream(db.sessionmaker, chunks())
    assert (result.created, result.updated, result.rejected_total) == (tokens, 2 * tokens, 0)
    async with db.sessionmaker() as session:
        stored = (
            await session.exec(select(Device.user_id, func.count()).group_by(Device.user_id))
        ).all()
    assert stored == [("pass-2", tokens)]
