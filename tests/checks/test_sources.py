"""Check sources against a real local HTTP server answering Prometheus-shaped and plain JSON,
and the builtins against the real database: each answer that is not exactly one number is
unreadable, never a number."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.auth.models import Scope
from app.checks.evaluate import Unreadable
from app.checks.sources import (
    MAX_ANSWER_BYTES,
    OPENS_WINDOW_SECONDS,
    failure_rate,
    http_field,
    json_field,
    opens_per_second,
    prometheus,
    prometheus_value,
)
from app.checks.spec import HttpSource, PrometheusSource
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger, partitions
from app.delivery.models import Delivery, DeliveryStatus
from app.events.models import EngagementEvent, EventType
from app.runtime import Runtime
from tests.checks.local_server import LocalServer
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


async def _prom(server: LocalServer, http: httpx.AsyncClient, seconds: float = 2.0) -> Any:
    source = PrometheusSource(url=server.url + "/", query='sum(rate(http_errors{job="api"}[1m]))')
    return await prometheus(http, source, seconds)


async def test_prometheus_one_series_is_a_reading_and_the_query_is_sent(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    server.prometheus_vector("0.0125")
    assert await _prom(server, http) == 0.0125
    path, query = server.requests[-1]
    assert path == "/api/v1/query"
    assert query == {"query": ['sum(rate(http_errors{job="api"}[1m]))']}
    server.answer({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "7"]}})
    assert await _prom(server, http) == 7.0


@pytest.mark.parametrize(
    ("values", "why"),
    [((), "0 series"), (("1", "2"), "2 series"), (("NaN",), "NaN"), (("+Inf",), "+Inf")],
)
async def test_prometheus_vectors_that_are_not_one_number_are_unreadable(
    server: LocalServer, http: httpx.AsyncClient, values: tuple[str, ...], why: str
) -> None:
    server.prometheus_vector(*values)
    reading = await _prom(server, http)
    assert isinstance(reading, Unreadable) and why in reading.why


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}, "parse"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "matrix"),
        ({"status": "success", "data": {"resultType": "string", "result": [1, "x"]}}, "string"),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "abc"]}}, "abc"),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, 3]}}, "malformed"),
        ({"status": "success"}, "no data"),
        ([1, 2], "JSON object"),
    ],
)
def test_prometheus_answers_that_are_not_one_number(answer: Any, why: str) -> None:
    reading = prometheus_value(answer)
    assert isinstance(reading, Unreadable) and why in reading.why


async def test_prometheus_errors_timeouts_and_refusals_are_unreadable(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    server.answer({"status": "error", "error": "query timed out"}, status=503)
    reading = await _prom(server, http)
    assert isinstance(reading, Unreadable) and "query timed out" in reading.why
    server.status, server.body = 502, b"<html>bad gateway</html>"
    reading = await _prom(server, http)
    assert isinstance(reading, Unreadable) and "without JSON" in reading.why
    server.prometheus_vector("1")
    server.delay = 1.0
    started = time.monotonic()
    reading = await _prom(server, http, seconds=0.3)
    assert isinstance(reading, Unreadable) and "within 0.3 s" in reading.why
    assert time.monotonic() - started < 0.9
    server.delay = 0
    port = server.port
    refused = PrometheusSource(
        url=f"http://127.0.0.1:{port + 1 if port < 65535 else 1}", query="up"
    )
    reading = await prometheus(http, refused, 1.0)
    assert isinstance(reading, Unreadable) and "could not be read" in reading.why


async def test_a_server_that_drips_its_answer_times_out_as_a_whole(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    server.prometheus_vector("1")
    server.drip = 0.6
    started = time.monotonic()
    reading = await _prom(server, http, seconds=0.4)
    assert isinstance(reading, Unreadable) and "within" in reading.why
    assert time.monotonic() - started < 0.6


async def test_http_reads_a_dotted_json_field(server: LocalServer, http: httpx.AsyncClient) -> None:
    source = HttpSource(url=server.url + "/health", json_field="latency.p99_ms")
    server.answer({"latency": {"p99_ms": 640}, "ok": True})
    assert await http_field(http, source, 2.0) == 640.0
    assert server.requests[-1][0] == "/health"
    for answer, why in [
        ({"latency": {"p99_ms": "640"}}, "str, not a number"),
        ({"latency": {"p99_ms": None}}, "NoneType"),
        ({"latency": {"p99_ms": True}}, "bool"),
        ({"latency": {}}, "no field"),
        ({"latency": [1]}, "no field"),
    ]:
        server.answer(answer)
        reading = await http_field(http, source, 2.0)
        assert isinstance(reading, Unreadable) and why in reading.why, (answer, reading)
    server.answer({"latency": {"p99_ms": 640}}, status=500)
    reading = await http_field(http, source, 2.0)
    assert isinstance(reading, Unreadable) and "HTTP 500" in reading.why
    server.answer({"latency": {"p99_ms": 640}}, status=302)
    reading = await http_field(http, source, 2.0)
    assert isinstance(reading, Unreadable) and "HTTP 302" in reading.why
    server.status, server.body = 200, b"[" + b"1," * MAX_ANSWER_BYTES + b"1]"
    reading = await http_field(http, source, 5.0)
    assert isinstance(reading, Unreadable) and "more than" in reading.why


def test_json_field_paths() -> None:
    assert json_field({"a": [{"b": 1.5}]}, "a.0.b") == 1.5
    assert json_field({"a": [{"b": 1.5}]}, "a.1.b") == Unreadable("the answer has no field 'a.1.b'")
    assert isinstance(json_field({"a": float("nan")}, "a"), Unreadable)
    assert json_field([3], "0") == 3.0


async def test_builtins_read_the_wave_and_the_campaign(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    devices = await add_devices(db, 4)
    headers = bearer(await make_key(Scope.campaigns_write))
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    campaign_id = uuid.UUID(created.json()["id"])
    now = utcnow()
    async with unit_of_work(db.sessionmaker) as session:
        assert isinstance(await failure_rate(session, campaign_id, 0), Unreadable)
        assert await opens_per_second(session, campaign_id, now) == 0.0
    async with unit_of_work(db.sessionmaker) as session:
        # Rows straight into the ledger: in the campaign's month's partition.
        month = await ledger.ledger_month(session, campaign_id)
        await partitions.ensure(session, month)
        rows = []
        for i, status in enumerate(
            [DeliveryStatus.sent, DeliveryStatus.sent, DeliveryStatus.sent, DeliveryStatus.failed]
        ):
            rows.append(
                Delivery(
                    campaign_id=campaign_id,
                    device_id=devices[i],
                    ledger_month=month,
                    wave=0,
                    status=status,
                )
            )
        session.add_all(rows)
        await session.flush()
        for row, seconds_ago in zip(rows, [1, 3, 9, OPENS_WINDOW_SECONDS + 5], strict=True):
            session.add(
                EngagementEvent(
                    delivery_id=row.id,
                    campaign_id=campaign_id,
                    wave=0,
                    type=EventType.opened,
                    occurred_at=now - timedelta(seconds=seconds_ago),
                )
            )
    async with unit_of_work(db.sessionmaker) as session:
        assert await failure_rate(session, campaign_id, 0) == 0.25
        assert await opens_per_second(session, campaign_id, now) == 3 / OPENS_WINDOW_SECONDS
        assert isinstance(await failure_rate(session, campaign_id, 1), Unreadable)
        assert await opens_per_second(session, uuid.uuid4(), now) == 0.0
