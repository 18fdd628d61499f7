"""Where a wave check reads its number: Prometheus, a JSON field over HTTP, or a builtin
figure of the campaign itself.

Every source answers a `Reading`: one number, or `Unreadable` saying why not. Nothing here
raises for a bad answer, a refused connection or a timeout: the check is inconclusive, and
`app.checks.evaluate` decides what inconclusive means. Redirects are not followed (a check
reads the URL it was given) and answers larger than MAX_ANSWER_BYTES are refused unread.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from app.checks.evaluate import Reading, Unreadable
from app.checks.spec import CheckSpec, HttpSource, PrometheusSource
from app.delivery import ledger
from app.events import repository as events_repo
from app.events.models import EventType

# The longest a source may take; a check whose interval is shorter waits that long at most.
TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 1_000_000
# opens_per_second: the campaign's opens over this many seconds before the run, divided by it.
OPENS_WINDOW_SECONDS = 10


def timeout_for(check: CheckSpec) -> float:
    return min(TIMEOUT_SECONDS, float(check.interval_seconds))


async def read_remote(client: httpx.AsyncClient, check: CheckSpec) -> Reading:
    """A Prometheus or HTTP check's reading."""
    seconds = timeout_for(check)
    if check.prometheus is not None:
        return await prometheus(client, check.prometheus, seconds)
    if check.http is not None:
        return await http_field(client, check.http, seconds)
    return Unreadable("not a remote check")


async def read_builtin(
    session: AsyncSession, check: CheckSpec, campaign_id: uuid.UUID, wave: int, now: datetime
) -> Reading:
    """A builtin check's reading, from the database."""
    if check.builtin == "failure_rate":
        return await failure_rate(session, campaign_id, wave)
    if check.builtin == "opens_per_second":
        return await opens_per_second(session, campaign_id, now)
    return Unreadable("not a builtin check")


async def prometheus(
    client: httpx.AsyncClient, source: PrometheusSource, seconds: float
) -> Reading:
    """An instant query through Prometheus's HTTP API: exactly one sample (a vector of one
    series, or a scalar) is a reading; anything else is not."""
    url = source.url.rstrip("/") + "/api/v1/query"
    answer = await _get_json(client, url, {"query": source.query}, seconds, any_status=True)
    if isinstance(answer, Unreadable):
        return answer
    return prometheus_value(answer)


def prometheus_value(answer: Any) -> Reading:
    """The one number in a Prometheus query answer, or why there is none."""
    if not isinstance(answer, dict):
        return Unreadable("Prometheus answered something other than a JSON object")
    if answer.get("status") != "success":
        error = answer.get("error") or answer.get("errorType") or "no error given"
        return Unreadable(f"Prometheus refused the query: {str(error)[:200]}")
    data = answer.get("data")
    if not isinstance(data, dict):
        return Unreadable("Prometheus answered no data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _sample(result)
    if kind != "vector":
        return Unreadable(f"the query gives a {kind}, not a vector or a scalar")
    if not isinstance(result, list):
        return Unreadable("Prometheus answered a vector that is not a list")
    if len(result) != 1:
        return Unreadable(f"the query gives {len(result)} series, not exactly one")
    series = result[0]
    return _sample(series.get("value") if isinstance(series, dict) else None)


def _sample(sample: Any) -> Reading:
    # [<unix time>, "<value>"]; Prometheus writes values as strings, "NaN" and "+Inf" too.
    if not isinstance(sample, list) or len(sample) != 2 or not isinstance(sample[1], str):
        return Unreadable("Prometheus answered a malformed sample")
    try:
        value = float(sample[1])
    except ValueError:
        return Unreadable(f"Prometheus answered {sample[1][:50]!r}, not a number")
    if not math.isfinite(value):
        return Unreadable(f"the query gives {sample[1]}")
    return value


async def http_field(client: httpx.AsyncClient, source: HttpSource, seconds: float) -> Reading:
    """A number at a dotted path in a JSON answer (keys, or list indexes as digits)."""
    answer = await _get_json(client, source.url, None, seconds)
    if isinstance(answer, Unreadable):
        return answer
    return json_field(answer, source.json_field)


def json_field(answer: Any, path: str) -> Reading:
    node = answer
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return Unreadable(f"the answer has no field {path!r}")
    # JSON true is a bool, and a bool is an int in Python: neither is a reading.
    if isinstance(node, bool) or not isinstance(node, int | float):
        return Unreadable(f"field {path!r} is {type(node).__name__}, not a number")
    value = float(node)
    if not math.isfinite(value):
        return Unreadable(f"field {path!r} is {value}")
    return value


async def _get_json(
    client: httpx.AsyncClient,
    url: str,
    params: dict[str, str] | None,
    seconds: float,
    *,
    any_status: bool = False,
) -> Any:
    """GET and parse JSON, the whole exchange within `seconds` (httpx's own timeouts bound
    each read, not a server that drips its answer). Prometheus explains a refused query in
    a JSON body with a 4xx or 5xx status (`any_status`); a plain endpoint's error status is
    unreadable as such."""
    try:
        async with asyncio.timeout(seconds):
            answer = await _fetch(client, url, params, seconds, any_status)
    except (TimeoutError, httpx.TimeoutException):
        return Unreadable(f"{url} did not answer within {seconds:g} s")
    except httpx.HTTPError as exc:
        return Unreadable(f"{url} could not be read: {type(exc).__name__}")
    if isinstance(answer, Unreadable):
        return answer
    status, body = answer
    try:
        return json.loads(body)
    except ValueError:
        return Unreadable(f"{url} answered HTTP {status} without JSON")


async def _fetch(
    client: httpx.AsyncClient,
    url: str,
    params: dict[str, str] | None,
    seconds: float,
    any_status: bool,
) -> tuple[int, bytes] | Unreadable:
    async with client.stream(
        "GET", url, params=params, timeout=seconds, follow_redirects=False
    ) as response:
        if not any_status and not response.is_success:
            return Unreadable(f"{url} answered HTTP {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                return Unreadable(f"{url} answered more than {MAX_ANSWER_BYTES} bytes")
        return response.status_code, bytes(body)


async def failure_rate(session: AsyncSession, campaign_id: uuid.UUID, wave: int) -> Reading:
    """The wave's permanent failures over its rows decided so far (failed + sent)."""
    counts = (await ledger.counts_by_wave(session, campaign_id)).get(wave, {})
    failed, sent = counts.get("failed", 0), counts.get("sent", 0)
    if failed + sent == 0:
        return Unreadable("no delivery of the wave is decided yet")
    return failed / (failed + sent)


async def opens_per_second(session: AsyncSession, campaign_id: uuid.UUID, now: datetime) -> Reading:
    """The campaign's opens per second over the OPENS_WINDOW_SECONDS before `now`. No opens
    is a reading of 0: the events table answers, with nothing."""
    since = now - timedelta(seconds=OPENS_WINDOW_SECONDS)
    seconds = await events_repo.per_second(session, campaign_id, EventType.opened, since, now)
    return sum(n for _second, n in seconds) / OPENS_WINDOW_SECONDS
