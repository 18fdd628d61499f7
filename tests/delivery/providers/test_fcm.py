"""The FCM provider driving the real firebase-admin client against the FCM protocol fake,
including the real google-auth service-account token exchange."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.campaigns.schemas import Content
from app.delivery.providers.base import Batch, Message, ResultKind
from app.delivery.providers.fcm import ERRORS, FcmProvider
from app.fakes.faults import FaultRule
from app.fakes.fcm import FcmFake

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
    message = json.loads(sends[0].body)["message"]
    assert message["notification"] == {
        "title": "Wyciąg gotowy",
        "body": "Zaloguj się, aby go zobaczyć.",
    }
    assert message["data"] == {"screen": "statements"}
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
