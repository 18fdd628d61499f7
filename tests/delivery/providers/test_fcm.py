"""The FCM provider driving the real firebase-admin client against the FCM protocol fake,
including the real google-auth service-account token exchange."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from wavecast_tools.fakes.faults import FaultRule
from wavecast_tools.fakes.fcm import FcmFake

from app.campaigns.schemas import Content
from app.control.plane import provider_scope
from app.control.throttle import Throttle
from app.delivery.providers import fcm as fcm_module
from app.delivery.providers.base import Batch, Message, ResultKind
from app.delivery.providers.fcm import ERRORS, MAX_CONNECTIONS, FcmProvider
from app.runtime import Runtime
from tests.support import listening_feed, wait_for

CONTENT = Content.model_validate(
    {
        "title": "Your statement is ready",
        "body": "Log in to see it.",
        "data": {"screen": "statements"},
        "locales": {"pl": {"title": "Wyciąg gotowy", "body": "Zaloguj się, aby go zobaczyć."}},
        "android": {"channel_id": "statements"},
    }
)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FcmFake, Path]]:
    # In a thread of its own: google-auth's token exchange is a blocking call made from the
    # event loop's thread, which would deadlock a fake served by that same loop.
    fcm = FcmFake(project_id="wavecast-test")
    with fcm.running_in_thread():
        account = tmp_path_factory.mktemp("fcm") / "service-account.json"
        fcm.create_service_account(account)
        yield fcm, account


@pytest.fixture
async def provider(fake: tuple[FcmFake, Path]) -> Iterator[FcmProvider]:  # type: ignore[misc]
    fcm, account = fake
    fcm.rulebook.clear()
    fcm.store.clear()
    p = FcmProvider(str(account), endpoint=fcm.url)
    yield p
    await p.aclose()


def batch(*tokens: str, locale: str | None = None) -> Batch:
    return Batch(
        campaign_id="c",
        content=CONTENT,
        messages=[
            Message(i + 1, None, token, "android", locale, None)  # type: ignore[arg-type]
            for i, token in enumerate(tokens)
        ],
    )


async def test_sends_what_the_content_says(
    provider: FcmProvider, fake: tuple[FcmFake, Path]
) -> None:
    fcm, _ = fake
    results = await provider.send(batch("tok-a", "tok-b", locale="pl-PL"))
    assert [r.kind for r in results] == [ResultKind.sent, ResultKind.sent]
    assert all(
        r.message_id and r.message_id.startswith("projects/wavecast-test/messages/")
        for r in results
    )
    sends = [r for r in fcm.records() if r.endpoint == "send"]
    assert sorted(r.token for r in sends) == ["tok-a", "tok-b"]
    # The two requests are in flight together: either may arrive first.
    message = json.loads(next(r.body for r in sends if r.token == "tok-a"))["message"]
    assert message["notification"] == {
        "title": "Wyciąg gotowy",
        "body": "Zaloguj się, aby go zobaczyć.",
    }
    # The delivery's reference rides along, for engagement events (`wavecast_ref`): tok-a's
    # row is delivery 1, tok-b's delivery 2.
    assert message["data"] == {"screen": "statements", "wavecast_ref": "1"}
    other = json.loads(next(r.body for r in sends if r.token == "tok-b"))["message"]
    assert other["data"]["wavecast_ref"] == "2"
    assert message["android"]["notification"]["channel_id"] == "statements"
    assert message["android"]["ttl"] == "14400s"
    assert any(r.endpoint == "token" for r in fcm.records()), "the OAuth2 exchange ran"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("UNREGISTERED", ResultKind.invalid_token),
        ("INVALID_ARGUMENT", ResultKind.failed),
        ("SENDER_ID_MISMATCH", ResultKind.halt),
        ("QUOTA_EXCEEDED", ResultKind.retry),
        ("UNAVAILABLE", ResultKind.retry),
        ("INTERNAL", ResultKind.retry),
        ("THIRD_PARTY_AUTH_ERROR", ResultKind.halt),
    ],
)
async def test_error_taxonomy(
    provider: FcmProvider, fake: tuple[FcmFake, Path], error: str, kind: ResultKind
) -> None:
    fcm, _ = fake
    fcm.rulebook.add(FaultRule(error=error, token="bad", retry_after=7))
    [ok, bad] = await provider.send(batch("good", "bad"))
    assert ok.kind is ResultKind.sent
    assert bad.kind is kind
    assert bad.error_code == error
    if error == "QUOTA_EXCEEDED":
        assert bad.retry_after == 7
    # The library's own retries are off: the sender decides. The one exception is the
    # credential refresh google-auth performs on a 401 (THIRD_PARTY_AUTH_ERROR), bounded at
    # two more tries, as it behaves against the real FCM.
    tries = [r.token for r in fcm.records() if r.endpoint == "send"].count("bad")
    assert tries == (3 if error == "THIRD_PARTY_AUTH_ERROR" else 1)


def test_every_fcm_error_has_a_row() -> None:
    codes = {code for _kind, code in ERRORS.values()}
    assert {
        "UNREGISTERED",
        "INVALID_ARGUMENT",
        "SENDER_ID_MISMATCH",
        "QUOTA_EXCEEDED",
        "UNAVAILABLE",
        "INTERNAL",
        "THIRD_PARTY_AUTH_ERROR",
    } <= codes


async def test_a_call_under_way_is_held_back_once_a_block_arrives_through_the_feed(
    provider: FcmProvider,
    fake: tuple[FcmFake, Path],
    db: Runtime,
    elsewhere: Throttle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fcm, _ = fake
    # One call larger than its lane's connections, so some of its requests wait in the pool.
    monkeypatch.setattr(fcm_module, "MAX_CALL", 500)
    feed = await listening_feed(db, {provider_scope("fcm"): provider.blocks})
    try:
        # Every answer takes a second. The fake speaks HTTP/1.1 (plain http), one request a
        # connection: the call's first MAX_CONNECTIONS requests are on the wire at once, the
        # rest wait in the lane's pool for one of them to be answered.
        fcm.rulebook.add(FaultRule(latency=1.0))
        n = MAX_CONNECTIONS + 50
        held_back = batch(*(f"held-{i}" for i in range(n)))
        call = asyncio.create_task(provider.send(held_back))

        async def on_the_wire() -> bool:
            return len(fcm.store.sends()) >= MAX_CONNECTIONS

        await wait_for(on_the_wire, within=5, interval=0.01)
        # Another worker got a Retry-After; this call asked Redis before it left, too early.
        await elsewhere.block_until(provider_scope("fcm"), 5)
        results = await call
    finally:
        await feed.stop()

    sends = fcm.store.sends()
    token_of = {m.delivery_id: m.token for m in held_back.messages}
    sent = sorted(token_of[r.delivery_id] for r in results if r.kind is ResultKind.sent)
    held = [r for r in results if r.unsent]
    assert len(sends) == len(sent) == MAX_CONNECTIONS, "requests left after the block was known"
    assert sent == sorted(r.token or "" for r in sends)
    assert len(held) == n - MAX_CONNECTIONS
    assert {r.error_code for r in held} == {"RETRY_AFTER_HELD"}
    # Each is due again when the block it met ends.
    assert all(0 < (r.retry_after or 0) <= 5 for r in held)
