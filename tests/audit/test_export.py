"""`GET /v1/audit/export` and `wavecast audit export` / `verify-export`, on the stored log:
a time range in chain order with the head at export time, streamed a page at a time, for
admins only, the same bytes from the API and the CLI, and re-verified offline, also against
a head kept from `wavecast audit verify` and across consecutive exports."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text

from app.audit import chain, export
from app.audit import service as audit
from app.audit.export_check import verify_export
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.db.session import unit_of_work
from app.runtime import Runtime
from tests.audit.test_tamper import TRICKY_VALUES, tamper
from tests.conftest import KeyMaker, bearer

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def stamp(minutes: float) -> str:
    return chain.stamp(at(minutes))


async def record_at(db: Runtime, moments: list[datetime], per_transaction: int = 1000) -> None:
    """One event per moment, in this order of sequence (a moment may be earlier than the
    one before it: an event recorded first can commit last)."""
    for start in range(0, len(moments), per_transaction):
        async with unit_of_work(db.sessionmaker) as session:
            for i, moment in enumerate(moments[start : start + per_transaction], start=start):
                recorded = audit.record(
                    session,
                    SYSTEM,
                    "test.event",
                    subject_type="test",
                    subject_id=i,
                    reason=f"event {i}",
                    after=TRICKY_VALUES[i % len(TRICKY_VALUES)],  # type: ignore[arg-type]
                )
                recorded.occurred_at = moment


async def stored(db: Runtime) -> dict[int, tuple[str, str]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT sequence, prev_hash, hash FROM audit_event"))
        return {int(s): (str(p), str(h)) for s, p, h in rows}


def documents(body: bytes) -> list[dict[str, Any]]:
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body.splitlines()]


async def api_export(client: httpx.AsyncClient, key: str, **params: str) -> httpx.Response:
    return await client.get("/v1/audit/export", params=params, headers=bearer(key))


def wavecast(database_url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "WAVECAST_DATABASE_URL": database_url, "WAVECAST_JSON_LOGS": "false"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "audit", *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


async def cli(db: Runtime, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(wavecast, db.settings.database_url, *args)


async def test_a_range_is_exported_in_chain_order_with_the_head(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    await record_at(db, [at(m) for m in range(10)])  # sequences 1..10, one a minute
    admin = await make_key(Scope.admin)  # sequence 11, recorded now: after them all
    rows = await stored(db)

    answer = await api_export(client, admin, **{"from": stamp(3), "to": stamp(7)})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == export.MEDIA_TYPE
    *events, last = documents(answer.content)
    assert [e["sequence"] for e in events] == [4, 5, 6, 7]  # occurred at minutes 3..6
    assert [(e["prev_hash"], e["hash"]) for e in events] == [rows[s] for s in (4, 5, 6, 7)]
    assert events[0] == {
        "sequence": 4,
        "occurred_at": stamp(3),
        "actor": SYSTEM.actor,
        "action": "test.event",
        "subject_type": "test",
        "subject_id": "3",
        "reason": "event 3",
        "before": None,
        "after": chain.normalise(TRICKY_VALUES[3]),
        "person_id": None,
        "person_name": None,
        "key_id": None,
        "channel": "system",
        "hash_version": 2,
        "prev_hash": rows[3][1],
        "hash": rows[4][1],
    }
    assert last == {
        "head": {"sequence": 11, "hash": rows[11][1]},
        "from": stamp(3),
        "to": stamp(7),
        "first_sequence": 4,
        "last_sequence": 7,
    }
    verdict = verify_export(answer.content.splitlines(keepends=True))
    assert verdict.failure is None and verdict.checked == 4
    assert verdict.starts_after == chain.Head(3, rows[3][1])  # what an earlier export shows

    async def sequences(**params: str) -> list[int]:
        answer = await api_export(client, admin, **params)
        assert answer.status_code == 200, answer.text
        assert verify_export(answer.content.splitlines()).failure is None
        return [e["sequence"] for e in documents(answer.content)[:-1]]

    assert await sequences() == list(range(1, 12))
    assert await sequences(**{"from": stamp(7)}) == [8, 9, 10, 11]
    assert await sequences(to=stamp(2)) == [1, 2]
    assert await sequences(**{"from": stamp(3), "to": stamp(3)}) == []
    assert await sequences(**{"from": stamp(60), "to": stamp(120)}) == []
    # Another time zone, the same instants.
    assert await sequences(**{"from": "2026-12-01T10:03:00+01:00"}) == list(range(4, 12))


async def test_a_range_keeps_events_committed_out_of_time_order_so_the_chain_holds(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    # Sequence 2 was recorded at minute 5 but committed after sequence 1 (minute 10).
    await record_at(db, [at(10), at(5), at(20)])
    admin = await make_key(Scope.admin)

    answer = await api_export(client, admin, **{"from": stamp(8), "to": stamp(30)})
    *events, last = documents(answer.content)
    # 1 and 3 are in the range; 2 lies between them in the chain, so it is exported too.
    assert [(e["sequence"], e["occurred_at"]) for e in events] == [
        (1, stamp(10)),
        (2, stamp(5)),
        (3, stamp(20)),
    ]
    assert (last["first_sequence"], last["last_sequence"]) == (1, 3)
    assert verify_export(answer.content.splitlines()).failure is None
    answer = await api_export(client, admin, **{"from": stamp(4), "to": stamp(6)})
    assert [e["sequence"] for e in documents(answer.content)[:-1]] == [2]


async def test_many_events_stream_a_bounded_page_at_a_time(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    admin = await make_key(Scope.admin)  # sequence 1
    await record_at(db, [at(i / 100) for i in range(5000)])
    pages: list[str] = []

    def capture(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        flat = " ".join(statement.split())
        if "FROM audit_event" in flat and "ORDER BY audit_event.sequence LIMIT" in flat:
            pages.append(flat)

    plan = await audit.plan_export(db.sessionmaker, since=None, until=None)
    assert (plan.first_sequence, plan.last_sequence) == (1, 5001)
    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        chunks = audit.export_lines(db.sessionmaker, plan, page_size=400)
        first = await anext(chunks)
        assert first.count(b"\n") == 400
        assert len(pages) == 1  # the first page is out before the second is read
        rest = [chunk async for chunk in chunks]
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    assert len(pages) == 13  # ceil(5001 / 400)
    assert all(chunk.count(b"\n") <= 400 for chunk in rest)
    body = first + b"".join(rest)
    verdict = verify_export(body.splitlines())
    assert verdict.failure is None and verdict.checked == 5001

    answer = await api_export(client, admin)
    assert answer.status_code == 200
    assert answer.content == body  # the API streams the same lines, with its own page size


async def test_only_admins_export(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    await record_at(db, [at(0)])
    assert (await client.get("/v1/audit/export")).status_code == 401
    for scope in set(Scope) - {Scope.admin}:
        answer = await api_export(client, await make_key(scope))
        assert answer.status_code == 403, (scope, answer.text)
        assert "'admin' scope" in answer.json()["detail"]
    assert (await api_export(client, await make_key(Scope.admin))).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "query.from"),
        ({"from": "2026-12-01T09:00:00"}, "query.from"),  # no time zone
        ({"to": "2026-13-01T09:00:00Z"}, "query.to"),
        ({"to": "2026-12-01"}, "query.to"),
        ({"from": "2026-12-01T09:00:00Z", "to": "2026-12-01T08:59:59Z"}, "query.to"),
    ],
    ids=["from-not-a-time", "from-naive", "to-no-such-month", "to-date-only", "to-before-from"],
)
async def test_a_bad_range_is_a_422_naming_the_parameter(
    db: Runtime,
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    params: dict[str, str],
    field: str,
) -> None:
    answer = await api_export(client, await make_key(Scope.admin), **params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in answer.json()["errors"]] == [field]


async def test_the_cli_writes_the_same_bytes_as_the_api(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker, tmp_path: Path
) -> None:
    await record_at(db, [at(m) for m in range(12)])
    admin = await make_key(Scope.admin)
    for params in ({"from": stamp(2), "to": stamp(9)}, {}):
        from_api = (await api_export(client, admin, **params)).content
        args = [f"--{name}={value}" for name, value in params.items()]
        output = tmp_path / f"export{len(params)}.ndjson"
        written = await cli(db, "export", *args, "--output", str(output))
        assert written.returncode == 0, written.stderr
        assert output.read_bytes() == from_api
        assert written.stdout == b""
        assert b"audit export:" in written.stderr
        on_stdout = await cli(db, "export", *args)
        assert on_stdout.returncode == 0, on_stdout.stderr
        assert on_stdout.stdout == from_api
    # Nothing left beside the outputs (a partial file is renamed once complete).
    assert sorted(await asyncio.to_thread(os.listdir, tmp_path)) == [
        "export0.ndjson",
        "export2.ndjson",
    ]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--from", "yesterday"], "--from"),
        (["--to", "2026-12-01T09:00:00"], "--to"),
        (["--from", "2026-12-02T00:00:00Z", "--to", "2026-12-01T00:00:00Z"], "--to"),
    ],
)
async def test_the_cli_refuses_a_bad_range_naming_the_option(
    db: Runtime, args: list[str], names: str
) -> None:
    result = await cli(db, "export", *args)
    assert result.returncode == 2
    assert names.encode() in result.stderr
    assert result.stdout == b""


def tampered(lines: list[bytes], how: str) -> tuple[list[bytes], int]:
    """The export's lines after one change, and the line the verifier must name."""
    changed = [*lines]
    if how == "edited":
        document = json.loads(changed[2])
        document["reason"] = "nothing to see"
        changed[2] = json.dumps(document).encode() + b"\n"
        return changed, 3
    if how == "deleted":
        del changed[2]
        return changed, 3
    if how == "reordered":
        changed[1], changed[2] = changed[2], changed[1]
        return changed, 2
    if how == "head-altered":
        document = json.loads(changed[-1])
        document["head"]["hash"] = "0" * 63 + "1"
        changed[-1] = json.dumps(document).encode() + b"\n"
        return changed, len(changed)
    assert how == "cut"
    return changed[:-1], len(changed)


@pytest.mark.parametrize("how", ["edited", "deleted", "reordered", "head-altered", "cut"])
async def test_verify_export_names_the_first_bad_line(
    db: Runtime, tmp_path: Path, how: str
) -> None:
    await record_at(db, [at(m) for m in range(6)])
    original = tmp_path / "audit.ndjson"
    assert (await cli(db, "export", "--output", str(original))).returncode == 0
    intact = await cli(db, "verify-export", str(original))
    assert intact.returncode == 0, intact.stderr
    assert b"audit export intact: 6 events, sequences 1..6" in intact.stdout

    lines, bad_line = tampered(original.read_bytes().splitlines(keepends=True), how)
    edited = tmp_path / "edited.ndjson"
    edited.write_bytes(b"".join(lines))
    result = await cli(db, "verify-export", str(edited))
    assert result.returncode == 1, result.stdout
    assert f"BROKEN at line {bad_line}".encode() in result.stderr


async def test_an_export_verifies_against_the_head_kept_from_audit_verify(
    db: Runtime, tmp_path: Path
) -> None:
    await record_at(db, [at(m) for m in range(4)])
    verified = await cli(db, "verify")
    assert verified.returncode == 0, verified.stderr
    found = re.search(rb"--expect-head (\d+:[0-9a-f]{64})", verified.stdout)
    assert found, verified.stdout
    head = found[1].decode()

    await record_at(db, [at(10)])  # the log grows after the head was kept
    before = tmp_path / "before.ndjson"
    assert (await cli(db, "export", "--output", str(before))).returncode == 0
    result = await cli(db, "verify-export", str(before), "--expect-head", head)
    assert result.returncode == 0, result.stderr
    assert f"holds the expected head {head}".encode() in result.stdout

    # Rewrite the tail: drop sequence 4 and append others in its place. The new log, and
    # an export of it, verify on their own; not against the kept head.
    await tamper(db, "DELETE FROM audit_event WHERE sequence >= 4")
    await record_at(db, [at(20), at(21)])
    after = tmp_path / "after.ndjson"
    assert (await cli(db, "export", "--output", str(after))).returncode == 0
    assert (await cli(db, "verify-export", str(after))).returncode == 0
    result = await cli(db, "verify-export", str(after), "--expect-head", head)
    assert result.returncode == 1
    assert b"BROKEN at line 4 (sequence 4)" in result.stderr
    assert head.split(":")[1].encode() in result.stderr


async def test_consecutive_exports_chain_into_each_other(db: Runtime, tmp_path: Path) -> None:
    await record_at(db, [at(m) for m in range(8)])
    first, second = tmp_path / "first.ndjson", tmp_path / "second.ndjson"
    assert (await cli(db, "export", "--to", stamp(5), "--output", str(first))).returncode == 0
    assert (await cli(db, "export", "--from", stamp(5), "--output", str(second))).returncode == 0

    checked = await cli(db, "verify-export", str(first))
    assert checked.returncode == 0, checked.stderr
    found = re.search(rb"--expect-head (\d+:[0-9a-f]{64})", checked.stdout)
    assert found and found[1].startswith(b"5:"), checked.stdout
    later = await cli(db, "verify-export", str(second), "--expect-head", found[1].decode())
    assert later.returncode == 0, later.stderr
    assert b"sequences 6..8" in later.stdout
    assert b"chains from sequence 5" in later.stdout

    wrong = "5:" + "e" * 64
    result = await cli(db, "verify-export", str(second), "--expect-head", wrong)
    assert result.returncode == 1
    assert b"BROKEN at line 1 (sequence 6)" in result.stderr


async def test_verify_export_needs_no_database(tmp_path: Path, db: Runtime) -> None:
    await record_at(db, [at(0), at(1)])
    output = tmp_path / "audit.ndjson"
    assert (await cli(db, "export", "--output", str(output))).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVECAST_")} | {
        "WAVECAST_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "audit", "verify-export", "-"],
        input=output.read_bytes(),
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b"intact: 2 events" in result.stdout
