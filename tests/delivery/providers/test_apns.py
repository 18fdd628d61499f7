"""The APNs provider driving the real aioapns client (token auth, HTTP/2 over TLS) against
two APNs protocol fakes, one per environment."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
from wavecast_tools.fakes.apns import ApnsFake, generate_apns_key, make_device_token
from wavecast_tools.fakes.faults import FaultRule
from wavecast_tools.fakes.tls import ensure_tls_files

from app.campaigns.schemas import Content
from app.control.plane import provider_scope
from app.control.throttle import Throttle
from app.delivery.providers.apns import (
    ERRORS,
    UNAVAILABLE_PAUSE_SECONDS,
    ApnsCredentials,
    ApnsProvider,
)
from app.delivery.providers.base import Batch, Message, ResultKind
from app.delivery.sender import _SharedBlock
from app.runtime import Runtime
from tests.support import listening_feed, sender_deps, wait_for

TOPIC = "com.example.wavecast"
CONTENT = Content.model_validate(
    {
        "title": "Your statement is ready",
        "body": "Log in to see it.",
        "data": {"screen": "statements"},
        "ios": {"badge": 1, "category": "STATEMENT", "mutable_content": True},
    }
)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("apns")
    tls = ensure_tls_files(root / "tls")
    key = generate_apns_key(root)
    sandbox = ApnsFake(tls=tls, environment="sandbox", topics=[TOPIC], keys=[key])
    production = ApnsFake(tls=tls, environment="production", topics=[TOPIC], keys=[key])
    with sandbox.running_in_thread(), production.running_in_thread():
        yield {"sandbox": sandbox, "production": production, "key": key, "tls": tls}


@pytest.fixture
async def provider(fakes: dict[str, object]) -> AsyncIterator[ApnsProvider]:
    sandbox, production = fakes["sandbox"], fakes["production"]
    assert isinstance(sandbox, ApnsFake) and isinstance(production, ApnsFake)
    for fake in (sandbox, production):
        fake.rulebook.clear()
        fake.store.clear()
    key = fakes["key"]
    p = ApnsProvider(
        ApnsCredentials(str(key.path), key.key_id, key.team_id, TOPIC),  # type: ignore[attr-defined]
        sandbox_url=sandbox.url,
        production_url=production.url,
        ca_file=str(fakes["tls"].ca_file),  # type: ignore[attr-defined]
    )
    yield p
    await p.aclose()


def message(i: int, env: str, seed: object = None) -> Message:
    return Message(i, None, make_device_token(env, seed or i), "ios", "en-GB", env)  # type: ignore[arg-type]


async def test_each_token_reaches_only_its_own_environment(
    provider: ApnsProvider, fakes: dict[str, ApnsFake]
) -> None:
    batch = Batch(
        "c", CONTENT, [message(1, "sandbox"), message(2, "production"), message(3, "production")]
    )
    results = await provider.send(batch)
    assert [r.kind for r in results] == [ResultKind.sent] * 3
    assert all(r.message_id for r in results)
    sandbox = [r for r in fakes["sandbox"].records() if r.endpoint == "send"]
    production = [r for r in fakes["production"].records() if r.endpoint == "send"]
    assert [r.token for r in sandbox] == [batch.messages[0].token]
    assert sorted(r.token for r in production) == sorted(m.token for m in batch.messages[1:])
    payload = json.loads(production[0].body)
    assert payload["aps"]["alert"] == {
        "title": "Your statement is ready",
        "body": "Log in to see it.",
    }
    assert payload["aps"]["badge"] == 1
    assert payload["aps"]["category"] == "STATEMENT"
    assert payload["aps"]["mutable-content"] == 1
    assert payload["screen"] == "statements"
    headers = production[0].headers
    assert headers["apns-topic"] == TOPIC
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert int(headers["apns-expiration"]) > 0


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("BadDeviceToken", ResultKind.invalid_token),
        ("Unregistered", ResultKind.invalid_token),
        ("InvalidProviderToken", ResultKind.halt),
        ("ExpiredProviderToken", ResultKind.halt),
        ("PayloadTooLarge", ResultKind.failed),
        ("TooManyRequests", ResultKind.retry),
        ("InternalServerError", ResultKind.retry),
        ("ServiceUnavailable", ResultKind.retry),
    ],
)
async def test_error_taxonomy(
    provider: ApnsProvider, fakes: dict[str, ApnsFake], reason: str, kind: ResultKind
) -> None:
    bad = message(2, "production", seed="bad")
    fakes["production"].rulebook.add(FaultRule(error=reason, token=bad.token))
    [ok, refused] = await provider.send(Batch("c", CONTENT, [message(1, "production"), bad]))
    assert ok.kind is ResultKind.sent
    assert refused.kind is kind
    assert refused.error_code == reason


async def test_no_environment_is_never_guessed(provider: ApnsProvider) -> None:
    orphan = Message(9, None, "ab" * 32, "ios", None, None)  # type: ignore[arg-type]
    [result] = await provider.send(Batch("c", CONTENT, [orphan]))
    assert result.kind is ResultKind.failed
    assert result.error_code == "no_apns_environment"


def _sends(fakes: dict[str, ApnsFake]) -> list[str]:
    return [
        r.token or ""
        for env in ("sandbox", "production")
        for r in fakes[env].records()
        if r.endpoint == "send"
    ]


async def test_a_pause_another_worker_writes_holds_every_request_not_yet_sent(
    provider: ApnsProvider, fakes: dict[str, ApnsFake], db: Runtime, elsewhere: Throttle
) -> None:
    feed = await listening_feed(db, {provider_scope("apns"): provider.blocks})
    try:
        await elsewhere.block_until(provider_scope("apns"), UNAVAILABLE_PAUSE_SECONDS)

        async def heard() -> bool:
            return provider.blocks.remaining() > 0

        await wait_for(heard, within=1, interval=0.01)
        results = await provider.send(
            Batch("c", CONTENT, [message(1, "sandbox"), message(2, "production")])
        )
    finally:
        await feed.stop()
    assert all(r.unsent and r.error_code == "RETRY_AFTER_HELD" for r in results)
    assert all(0 < (r.retry_after or 0) <= UNAVAILABLE_PAUSE_SECONDS for r in results)
    assert _sends(fakes) == []


async def test_service_unavailable_pauses_this_process_at_once_and_every_worker(
    provider: ApnsProvider, fakes: dict[str, ApnsFake], db: Runtime
) -> None:
    down = message(1, "production", seed="down")
    fakes["production"].rulebook.add(FaultRule(error="ServiceUnavailable", token=down.token))
    shared = _SharedBlock(await sender_deps(db), "apns")
    [refused] = await provider.send(Batch("c", CONTENT, [down], block=shared))
    assert refused.retry_after == UNAVAILABLE_PAUSE_SECONDS
    # Written to Redis by the time the call returns, not only when the sender records it.
    assert 0 < await shared.remaining() <= UNAVAILABLE_PAUSE_SECONDS
    later = await provider.send(
        Batch("c", CONTENT, [message(2, "production"), message(3, "sandbox")])
    )
    assert all(r.unsent for r in later)
    assert _sends(fakes) == [down.token]


def test_every_apns_reason_in_the_spec_has_a_row() -> None:
    assert {
        "BadDeviceToken",
        "InvalidProviderToken",
        "ExpiredProviderToken",
        "Unregistered",
        "PayloadTooLarge",
        "TooManyRequests",
        "InternalServerError",
        "ServiceUnavailable",
    } <= set(ERRORS)
