"""API rate limits: GCRA arithmetic, the Redis script, the middleware's 429, and what happens
when Redis is unreachable (each process keeps limiting on its own; nothing becomes a 500)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.auth import service as auth_service
from app.auth.models import Scope
from app.db.session import unit_of_work
from app.main import create_app
from app.ops.ratelimit import Limiter
from app.ops.ratelimit_math import SLACK, burst_for, gcra
from app.runtime import Runtime
from app.settings import Settings
from app.ui import sessions
from tests.conftest import KeyMaker, bearer


@given(
    interval=st.floats(0.001, 10),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=60),
)
# The second request comes half a microsecond before its turn: within SLACK, so allowed, and
# two requests fit a window of 0.9995 intervals. Two microseconds early, it is refused.
@example(interval=0.001, burst=1, gaps=[0.0, 0.0009995])
@example(interval=0.001, burst=1, gaps=[0.0, 0.000998])
def test_gcra_never_lets_more_through_than_burst_plus_rate(
    interval: float, burst: int, gaps: list[float]
) -> None:
    tat, now, allowed_at = 0.0, 1000.0, []
    for gap in gaps:
        now += gap
        decision = gcra(tat, now, interval, burst)
        if decision.allowed:
            allowed_at.append(now)
            tat = decision.tat
            assert decision.retry_after == 0
        else:
            assert decision.tat == tat
            assert decision.retry_after > 0
            # Waiting the advertised time is enough.
            assert gcra(tat, now + decision.retry_after + 1e-9, interval, burst).allowed
    # A request is allowed up to SLACK before its turn, so in any window of length w at most
    # burst + (w + SLACK) / interval requests were allowed (1e-6 of a request absorbs rounding).
    for i, start in enumerate(allowed_at):
        for j in range(i, len(allowed_at)):
            window = allowed_at[j] - start
            assert j - i + 1 <= burst + (window + SLACK) / interval + 1e-6


@given(interval=st.floats(0.001, 10), burst=st.integers(1, 20))
def test_gcra_allows_exactly_burst_at_once_and_requests_at_the_rate(
    interval: float, burst: int
) -> None:
    tat, now = 0.0, 50.0
    for _ in range(burst):
        decision = gcra(tat, now, interval, burst)
        assert decision.allowed
        tat = decision.tat
    assert not gcra(tat, now, interval, burst).allowed
    for k in range(1, 10):  # a client at the sustained rate is never refused
        decision = gcra(tat, now + k * interval * 1.0001, interval, burst)
        assert decision.allowed
        tat = decision.tat


def test_burst_is_a_small_multiple_of_the_rate() -> None:
    assert burst_for(500, 2) == 1000
    assert burst_for(0.1, 2) == 1
    with pytest.raises(ValueError, match="interval"):
        gcra(0, 0, 0, 1)


async def test_redis_script_matches_the_arithmetic(db: Runtime) -> None:
    limiter = Limiter(db.redis, 2)  # interval 0.5 s, burst 4
    answers = [await limiter.check("key:abc") for _ in range(5)]
    assert answers[:4] == [None] * 4
    assert answers[4] is not None and 0 < answers[4] <= 0.5
    assert await limiter.check("key:other") is None  # buckets are independent
    ttl = await db.redis.pttl("wavecast:ratelimit:key:abc")
    assert 0 < ttl <= 3000
    # Waiting the advertised time is enough.
    await asyncio.sleep(answers[4] + 0.01)
    assert await limiter.check("key:abc") is None


async def _client(settings: Settings, runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as c:
        yield c


@pytest.fixture
async def limited(db: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    # One request per 4 s, burst 1: a slow, loaded machine cannot refill it mid-test.
    settings = db.settings.model_copy(update={"api_rate_limit": 0.25})
    async for c in _client(settings, db):
        yield c


async def test_over_the_limit_is_a_429_problem_with_retry_after(
    limited: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    key, other = bearer(await make_key(Scope.admin)), bearer(await make_key(Scope.admin))
    answers = [await limited.get("/v1/keys", headers=key) for _ in range(2)]
    assert answers[0].status_code == 200
    refused = answers[1]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 4
    assert refused.json()["status"] == 429
    assert "API key" in refused.json()["detail"]
    assert refused.headers["x-content-type-options"] == "nosniff"
    # Another key is not affected; health, readiness and metrics are never limited.
    assert (await limited.get("/v1/keys", headers=other)).status_code == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        codes = [(await limited.get(path)).status_code for _ in range(6)]
        assert codes == [200] * 6, path


async def test_unauthenticated_requests_are_limited_per_address(
    limited: httpx.AsyncClient,
) -> None:
    codes = [(await limited.get("/openapi.json")).status_code for _ in range(2)]
    assert codes == [200, 429]


async def test_made_up_keys_are_charged_to_the_address(limited: httpx.AsyncClient) -> None:
    # Every request names a different well-formed key: each has a fresh key bucket, but
    # failing authentication also counts against the client's address.
    codes = []
    for i in range(2):
        made_up = f"wck_{i:012d}_{'x' * 43}"
        codes.append((await limited.get("/v1/devices", headers=bearer(made_up))).status_code)
    assert codes == [401, 429]


async def test_form_sessions_have_their_own_buckets_and_static_files_are_free(
    limited: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    # Operators behind one proxy share an address: anonymous traffic using up the address's
    # bucket must not refuse an operator's pages (or stops).
    assert (await limited.get("/openapi.json")).status_code == 200
    assert (await limited.get("/openapi.json")).status_code == 429
    for _ in range(4):
        assert (await limited.get("/ui/static/ui.css")).status_code == 200
    key = await make_key(Scope.campaigns_read)
    async with unit_of_work(db.sessionmaker) as session:
        principal = await auth_service.authenticate(session, db.settings, key)
    assert principal is not None and principal.key_id is not None
    first = await sessions.create(db.redis, principal.key_id)
    second = await sessions.create(db.redis, principal.key_id)
    answers = []
    for ui_session in (first, second):
        limited.cookies.set(sessions.COOKIE, ui_session.id, domain="wavecast.test", path="/ui")
        answers.append((await limited.get("/ui/campaigns")).status_code)
        limited.cookies.clear()
    assert answers == [200, 200]
    # The same session a second time within its interval is over its own limit.
    limited.cookies.set(sessions.COOKIE, first.id, domain="wavecast.test", path="/ui")
    assert (await limited.get("/ui/campaigns")).status_code == 429


async def test_made_up_form_cookies_are_charged_to_the_address(
    limited: httpx.AsyncClient,
) -> None:
    codes = []
    for i in range(2):
        limited.cookies.set(sessions.COOKIE, f"invented-{i}", domain="wavecast.test", path="/ui")
        codes.append((await limited.get("/ui/campaigns")).status_code)
        limited.cookies.clear()
    assert codes == [303, 429]


async def test_zero_disables_the_limit(db: Runtime, make_key: KeyMaker) -> None:
    key = bearer(await make_key(Scope.admin))
    async for c in _client(db.settings.model_copy(update={"api_rate_limit": 0}), db):
        codes = {(await c.get("/v1/keys", headers=key)).status_code for _ in range(10)}
        assert codes == {200}


async def test_with_redis_down_requests_still_work_and_are_limited_per_process(
    settings: Settings, db: Runtime, make_key: KeyMaker
) -> None:
    key = bearer(await make_key(Scope.admin))
    broken = settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "api_rate_limit": 0.25}
    )
    runtime = await Runtime.start(broken)
    try:
        async for c in _client(broken, runtime):
            answers = [await c.get("/v1/keys", headers=key) for _ in range(3)]
            other = bearer(await make_key(Scope.devices_write))
            registered = await c.post(
                "/v1/devices", json={"token": "t-1", "platform": "android"}, headers=other
            )
    finally:
        await runtime.close()
    codes = [a.status_code for a in answers]
    assert codes[0] == 200  # requests go through without the shared counter
    assert codes[1:] == [429, 429]  # and the process still enforces the limit by itself
    assert answers[1].headers["retry-after"]
    assert registered.status_code == 201  # a write that does not need Redis works too
