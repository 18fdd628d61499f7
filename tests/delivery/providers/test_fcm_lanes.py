"""The FCM provider's lanes: one connection pool per call in flight, never a queue inside the
process, and a lane whose call was cancelled mid-flight is never reused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from wavecast_tools.fakes.faults import FaultRule
from wavecast_tools.fakes.fcm import FcmFake

from app.campaigns.schemas import Content
from app.delivery.providers import fcm as fcm_module
from app.delivery.providers.base import Batch, Message, ResultKind
from app.delivery.providers.fcm import FcmProvider

CONTENT = Content.model_validate({"title": "Statement", "body": "Ready"})


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FcmFake, Path]]:
    fcm = FcmFake(project_id="wavecast-lanes")
    with fcm.running_in_thread():
        account = tmp_path_factory.mktemp("fcm-lanes") / "service-account.json"
        fcm.create_service_account(account)
        yield fcm, account


@pytest.fixture
async def provider(fake: tuple[FcmFake, Path]) -> AsyncIterator[FcmProvider]:
    fcm, account = fake
    fcm.rulebook.clear()
    fcm.store.clear()
    p = FcmProvider(str(account), endpoint=fcm.url)
    yield p
    await p.aclose()


def batch(tag: str, n: int) -> Batch:
    return Batch(
        "c",
        CONTENT,
        [Message(i, None, f"{tag}-{i}", "android", None, None) for i in range(n)],  # type: ignore[arg-type]
    )


async def test_one_lane_per_call_in_flight_reused_afterwards(
    provider: FcmProvider, fake: tuple[FcmFake, Path]
) -> None:
    fcm, _ = fake
    fcm.rulebook.add(FaultRule(token_prefix="slow-", latency=0.3))
    answers = await asyncio.gather(*(provider.send(batch(f"slow-{k}", 20)) for k in range(3)))
    assert [{r.kind for r in a} for a in answers] == [{ResultKind.sent}] * 3
    assert provider.lanes == 3, "three calls at once: three lanes, none waited for another"
    for k in range(3):
        assert {r.kind for r in await provider.send(batch(f"again-{k}", 10))} == {ResultKind.sent}
    assert provider.lanes == 3, "calls one after another reuse the idle lanes"


async def test_lanes_are_bounded(
    provider: FcmProvider, fake: tuple[FcmFake, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fcm_module, "MAX_LANES", 2)
    fcm, _ = fake
    fcm.rulebook.add(FaultRule(token_prefix="slow-", latency=0.2))
    answers = await asyncio.gather(*(provider.send(batch(f"slow-{k}", 5)) for k in range(5)))
    assert all({r.kind for r in a} == {ResultKind.sent} for a in answers)
    assert provider.lanes == 2


async def test_a_cancelled_call_retires_its_lane(
    provider: FcmProvider, fake: tuple[FcmFake, Path]
) -> None:
    fcm, _ = fake
    assert {r.kind for r in await provider.send(batch("warm", 5))} == {ResultKind.sent}
    assert provider.lanes == 1
    fcm.rulebook.add(FaultRule(token_prefix="stuck-", latency=2.0))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(provider.send(batch("stuck", 5)), timeout=0.3)
    assert provider.lanes == 0, "the interrupted lane's client is closed, not reused"
    assert {r.kind for r in await provider.send(batch("after", 5))} == {ResultKind.sent}
    assert provider.lanes == 1


async def test_a_batch_split_over_lanes_keeps_the_answers_it_has_at_its_deadline(
    provider: FcmProvider, fake: tuple[FcmFake, Path]
) -> None:
    """A batch goes out in calls of MAX_CALL messages, one lane each, all at once; at the
    batch's deadline the calls that answered keep their answers (those devices are not sent
    again), and only the unanswered ones come back as timeouts."""
    fcm, _ = fake
    # Room for firebase-admin's own CPU: building and parsing a call of MAX_CALL messages
    # takes most of a second on a busy two-core machine.
    fcm.rulebook.add(FaultRule(token_prefix="late-", latency=6.0))
    fcm.rulebook.add(FaultRule(token_prefix="quick-", latency=0.3))
    quick = fcm_module.MAX_CALL
    messages = [Message(i, None, f"quick-{i}", "android", None, None) for i in range(quick)]  # type: ignore[arg-type]
    messages += [Message(quick + i, None, f"late-{i}", "android", None, None) for i in range(20)]  # type: ignore[arg-type]
    started = asyncio.get_running_loop().time()
    results = await provider.send(Batch("c", CONTENT, messages, deadline=time.monotonic() + 3.0))
    took = asyncio.get_running_loop().time() - started
    kinds = {r.delivery_id: (r.kind, r.error_code) for r in results}
    assert len(results) == len(messages)
    assert all(kinds[i] == (ResultKind.sent, None) for i in range(quick))
    assert all(kinds[quick + i] == (ResultKind.retry, "timeout") for i in range(20))
    assert took < 5.0, "the batch returned at its deadline, not when the late call answered"
    # One call answers all its messages at once: quick answers beside timeouts show the
    # batch went out as separate calls. The timed-out call's lane is retired.
    assert provider.lanes == 1


async def test_a_lane_keeps_no_cookie_an_answer_sets(provider: FcmProvider) -> None:
    """FCM's API uses no cookies: a lane's client does not parse answers for them (httpx's
    jar would, on every answer), and sends none back."""
    lane = fcm_module.http_client(provider._template._credential)
    client = lane._async_client
    try:
        request = httpx.Request("POST", "https://fcm.googleapis.com/v1/projects/p/messages:send")
        answer = httpx.Response(200, headers={"set-cookie": "NID=1; Path=/"}, request=request)
        client.cookies.extract_cookies(answer)
        assert not client.cookies
        assert "cookie" not in client.build_request("POST", request.url).headers
        plain = httpx.Cookies()
        plain.extract_cookies(answer)
        assert plain.get("NID") == "1"  # what the default jar would have kept
    finally:
        await client.aclose()
