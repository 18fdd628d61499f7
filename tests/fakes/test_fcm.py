"""Real firebase-admin 7.7 (``send_each_async``, service-account token exchange) vs the FCM fake.

The fakes run in a background thread: google-auth exchanges tokens with a *blocking* call on
the event-loop thread, which a fake served by that same loop could never answer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from firebase_admin import exceptions, messaging
from google.auth.exceptions import RefreshError
from wavecast_tools.fakes.clients import close_firebase_app, firebase_app_for
from wavecast_tools.fakes.fcm import (
    GOOGLE_TOKEN_URI,
    JWT_BEARER_GRANT,
    FcmFake,
    write_service_account,
)
from wavecast_tools.fakes.tls import TlsFiles, ensure_tls_files

from .support import raw_client

PROJECT = "wavecast-test"
NOTIFICATION = messaging.Notification(title="Wave 1", body="ęśąćż")

# firebase-admin 7.7 deprecates Message.token in favour of Message.fid; FCM still takes both.
pytestmark = pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning")


def message(token: str, **kwargs: Any) -> messaging.Message:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return messaging.Message(token=token, **kwargs)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls_files(tmp_path_factory.mktemp("fcm-tls"))


@pytest.fixture(scope="module")
def fake(tls: TlsFiles) -> Iterator[FcmFake]:
    """TLS with ALPN h2 (what firebase-admin uses against https://), token endpoint plaintext."""
    server = FcmFake(project_id=PROJECT, tls=tls)
    with server.running_in_thread():
        yield server


@pytest.fixture(autouse=True)
def _fresh_fake(fake: FcmFake) -> Iterator[None]:
    yield
    fake.reset()


async def open_app(
    fake: FcmFake, directory: Path, name: str, service_account: Path | None = None, **kw: Any
) -> Any:
    path = service_account or fake.create_service_account(directory / f"{name}.json").path
    assert path is not None
    with pytest.MonkeyPatch.context() as env:
        # httpx reads SSL_CERT_FILE once, when firebase-admin builds its transport (now).
        if fake.tls is not None:
            env.setenv("SSL_CERT_FILE", str(fake.tls.ca_file))
        return firebase_app_for(path, fake.url, name=name, **kw)


@pytest.fixture(scope="module")
async def app(fake: FcmFake, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    firebase = await open_app(fake, tmp_path_factory.mktemp("fcm-app"), "fcm-tests")
    yield firebase
    await close_firebase_app(firebase)


def sends_for(fake: FcmFake, token: str) -> list[Any]:
    return [r for r in fake.sends() if r.token == token]


async def test_token_exchange_then_http2_sends_are_recorded(fake: FcmFake, tmp_path: Path) -> None:
    firebase = await open_app(fake, tmp_path, "fcm-first-use")
    try:
        batch = [
            message(
                f"tok-{i}",
                notification=NOTIFICATION,
                data={"campaign": "c1", "wave": "1"},
                android=messaging.AndroidConfig(priority="high", ttl=3600, collapse_key="c1"),
                apns=messaging.APNSConfig(
                    headers={"apns-priority": "10"},
                    payload=messaging.APNSPayload(aps=messaging.Aps(badge=1)),
                ),
            )
            for i in range(3)
        ]
        response = await messaging.send_each_async(batch, app=firebase)
    finally:
        await close_firebase_app(firebase)

    assert response.success_count == 3
    exchange, *sends = fake.records()
    assert (exchange.endpoint, exchange.status) == ("token", 200)
    assert exchange.token is not None and exchange.token.endswith(".iam.gserviceaccount.com")
    assert exchange.protocol == "http/1.1"  # google-auth's requests call, plaintext listener
    assert sorted(r.token for r in sends if r.token) == ["tok-0", "tok-1", "tok-2"]
    names = {r.message_id for r in sends}
    assert names == {x.message_id for x in response.responses}
    record = sends[0]
    assert record.protocol == "h2"
    assert record.headers["authorization"].startswith("Bearer ya29.fake.")
    assert record.path == f"/v1/projects/{PROJECT}/messages:send"
    sent = record.payload["message"]
    assert sent["notification"] == {"title": "Wave 1", "body": "ęśąćż"}
    assert sent["data"] == {"campaign": "c1", "wave": "1"}
    assert sent["android"] == {"priority": "high", "ttl": "3600s", "collapse_key": "c1"}
    assert sent["apns"]["payload"] == {"aps": {"badge": 1}}


async def test_dry_run_gets_googles_fixed_message_name(app: Any, fake: FcmFake) -> None:
    response = await messaging.send_each_async([message("dry")], dry_run=True, app=app)
    assert response.responses[0].message_id == f"projects/{PROJECT}/messages/fake_message_id"
    assert fake.sends()[0].payload["validate_only"] is True


async def test_fcm_errors_map_to_firebase_admin_exceptions(app: Any, fake: FcmFake) -> None:
    expected = {
        "UNREGISTERED": messaging.UnregisteredError,
        "INVALID_ARGUMENT": exceptions.InvalidArgumentError,
        "SENDER_ID_MISMATCH": messaging.SenderIdMismatchError,
        "QUOTA_EXCEEDED": messaging.QuotaExceededError,
        "THIRD_PARTY_AUTH_ERROR": messaging.ThirdPartyAuthError,
    }
    for error in expected:
        fake.add_rule(
            token=error, error=error, retry_after=7 if error == "QUOTA_EXCEEDED" else None
        )
    response = await messaging.send_each_async([message(t) for t in expected], app=app)

    for (error, exc_type), result in zip(expected.items(), response.responses, strict=True):
        assert type(result.exception) is exc_type, error
    quota = response.responses[list(expected).index("QUOTA_EXCEEDED")].exception
    assert quota.http_response.status_code == 429
    assert quota.http_response.headers["retry-after"] == "7"
    # 429 is not retried by firebase-admin (its Retry-After support is off by default).
    assert len(sends_for(fake, "QUOTA_EXCEEDED")) == 1
    # A 401 makes firebase-admin's auth flow force a token refresh and resend, twice.
    assert len(sends_for(fake, "THIRD_PARTY_AUTH_ERROR")) == 3
    assert sum(r.endpoint == "token" for r in fake.records()) == 2


async def test_5xx_are_retried_with_backoff_then_mapped(app: Any, fake: FcmFake) -> None:
    fake.add_rule(token="UNAVAILABLE", error="UNAVAILABLE")
    fake.add_rule(token="INTERNAL", error="INTERNAL")
    fake.add_rule(token="recovers", error="UNAVAILABLE", count=2)
    batch = [message("UNAVAILABLE"), message("INTERNAL"), message("recovers")]
    response = await messaging.send_each_async(batch, app=app)

    unavailable, internal, recovers = response.responses
    assert type(unavailable.exception) is exceptions.UnavailableError
    assert type(internal.exception) is exceptions.InternalError
    assert recovers.success
    for token, attempts in (("UNAVAILABLE", 5), ("INTERNAL", 5), ("recovers", 3)):
        records = sends_for(fake, token)
        assert len(records) == attempts, token
        gaps = [b.monotonic - a.monotonic for a, b in itertools.pairwise(records)]
        # HttpxRetry(max_retries=4, backoff_factor=0.5): sleeps 0, 1, 2, 4 seconds.
        for gap, planned in zip(gaps, (0.0, 1.0, 2.0, 4.0), strict=False):
            assert planned - 0.05 <= gap <= planned + 0.6, (token, gaps)


async def test_revoked_access_token_is_refreshed_and_the_send_retried(
    app: Any, fake: FcmFake
) -> None:
    fake.revoke_access_tokens()
    response = await messaging.send_each_async([message("after-revoke")], app=app)
    assert response.success_count == 1
    assert [(r.endpoint, r.status) for r in fake.records()] == [
        ("send", 401),
        ("token", 200),
        ("send", 200),
    ]
    assert fake.records()[0].reason == "UNAUTHENTICATED"


async def test_service_account_key_unknown_to_google_is_refused(
    fake: FcmFake, tmp_path: Path
) -> None:
    trusted = fake.create_service_account(tmp_path / "trusted.json")
    # Same account e-mail, but a key Google never saw: the JWT signature does not verify.
    forged = write_service_account(
        tmp_path / "forged.json",
        project_id=PROJECT,
        token_uri=fake.token_uri,
        client_email=trusted.client_email,
    )
    assert forged.path is not None
    firebase = await open_app(fake, tmp_path, "fcm-forged", service_account=forged.path)
    try:
        with pytest.raises(exceptions.UnknownError) as raised:
            await messaging.send_each_async([message("never-sent")], app=firebase)
    finally:
        await close_firebase_app(firebase)
    # The refresh error escapes send_data and fails the whole batch, not one message.
    assert isinstance(raised.value.cause, RefreshError)
    assert "invalid_grant" in str(raised.value.cause)
    assert [(r.endpoint, r.status, r.reason) for r in fake.records()] == [
        ("token", 400, "invalid_grant")
    ]


@pytest.mark.parametrize("action", ["drop", "reset"])
async def test_connection_faults_are_not_retried(app: Any, fake: FcmFake, action: str) -> None:
    fake.add_rule(token="victim", action=action, count=1)
    response = await messaging.send_each_async([message("victim")], app=app)
    [result] = response.responses
    assert type(result.exception) is exceptions.UnknownError
    assert [r.action for r in sends_for(fake, "victim")] == [action]
    # The client recovers by itself for the next batch.
    assert (await messaging.send_each_async([message("next")], app=app)).success_count == 1


async def test_goaway_is_retried_by_httpcore_unless_nothing_was_answered_yet(
    fake: FcmFake, tmp_path: Path
) -> None:
    firebase = await open_app(fake, tmp_path, "fcm-goaway")
    try:
        # First answer on a fresh connection: GOAWAY(last_stream_id=0). httpcore only
        # re-dispatches streams above a *non-zero* last_stream_id, so this one fails.
        fake.add_rule(token="first", action="goaway", count=1)
        first = await messaging.send_each_async([message("first")], app=firebase)
        # Now stream 1 of the new connection is answered; GOAWAY(last_stream_id=1) tells
        # httpcore stream 3 was never processed, and it resends it on a new connection.
        await messaging.send_each_async([message("warm")], app=firebase)
        fake.add_rule(token="later", action="goaway", count=1)
        later = await messaging.send_each_async([message("later")], app=firebase)
    finally:
        await close_firebase_app(firebase)
    assert type(first.responses[0].exception) is exceptions.UnknownError
    assert later.success_count == 1
    assert [r.action for r in sends_for(fake, "later")] == ["goaway", "answer"]


async def test_dropped_http2_connection_fails_every_message_on_it(app: Any, fake: FcmFake) -> None:
    fake.add_rule(token="victim", action="drop", count=1)
    response = await messaging.send_each_async([message("victim"), message("bystander")], app=app)
    assert response.failure_count == 2
    assert all(type(r.exception) is exceptions.UnknownError for r in response.responses)


async def test_latency_beyond_http_timeout_is_deadline_exceeded(
    fake: FcmFake, tmp_path: Path
) -> None:
    firebase = await open_app(fake, tmp_path, "fcm-timeout", http_timeout=0.3)
    fake.add_rule(token="slow", latency=1.0)
    try:
        response = await messaging.send_each_async([message("slow")], app=firebase)
    finally:
        await close_firebase_app(firebase)
    assert type(response.responses[0].exception) is exceptions.DeadlineExceededError
    assert len(sends_for(fake, "slow")) == 1  # a timeout is not retried either


async def test_plain_http_endpoint_is_spoken_as_http1(tmp_path: Path) -> None:
    plain = FcmFake(project_id=PROJECT)
    with plain.running_in_thread():
        firebase = await open_app(plain, tmp_path, "fcm-plain")
        try:
            response = await messaging.send_each_async(
                [message(f"p{i}", data={"k": "v"}) for i in range(5)], app=firebase
            )
        finally:
            await close_firebase_app(firebase)
        assert response.success_count == 5
        assert {r.protocol for r in plain.sends()} == {"http/1.1"}


async def test_wire_level_validation_and_auth(fake: FcmFake, tmp_path: Path) -> None:
    """What firebase-admin validates away client-side, checked with a bare HTTP/2 client."""
    account = fake.create_service_account(tmp_path / "raw.json")
    assert account.path is not None
    info = json.loads(account.path.read_text())
    now = int(time.time())
    claims = {
        "iss": account.client_email,
        "aud": GOOGLE_TOKEN_URI,
        "iat": now,
        "exp": now + 3600,
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
    }
    assertion = jwt.encode(claims, info["private_key"], algorithm="RS256")
    url = f"{fake.url}/v1/projects/{PROJECT}/messages:send"
    assert fake.tls is not None
    async with raw_client(fake.tls.ca_file) as http:
        grant = await http.post(
            fake.token_uri, data={"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
        )
        assert grant.status_code == 200
        assert set(grant.json()) == {"access_token", "expires_in", "token_type"}
        bad_grant = await http.post(fake.token_uri, data={"grant_type": "password"})
        assert bad_grant.json()["error"] == "unsupported_grant_type"
        old_claims = {**claims, "iat": now - 7200, "exp": now - 3600}
        stale = jwt.encode(old_claims, info["private_key"], algorithm="RS256")
        expired = await http.post(
            fake.token_uri, data={"grant_type": JWT_BEARER_GRANT, "assertion": stale}
        )
        assert expired.json()["error"] == "invalid_grant"
        auth = {"authorization": f"Bearer {grant.json()['access_token']}"}

        anonymous = await http.post(url, json={"message": {"token": "t"}})
        assert anonymous.http_version == "HTTP/2"
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["status"] == "UNAUTHENTICATED"
        other_project = await http.post(
            url.replace(PROJECT, "someone-else"), json={"message": {"token": "t"}}, headers=auth
        )
        assert other_project.json()["error"]["status"] == "PERMISSION_DENIED"

        invalid = await http.post(
            url, json={"message": {"token": "t", "data": {"n": 1}}}, headers=auth
        )
        error = invalid.json()["error"]
        assert (invalid.status_code, error["status"]) == (400, "INVALID_ARGUMENT")
        fcm_error, bad_request = error["details"]
        assert fcm_error == {
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": "INVALID_ARGUMENT",
        }
        assert bad_request["fieldViolations"][0]["field"] == "message.data[0].value"

        too_big = {"message": {"token": "t", "data": {"k": "v" * 4096}}}
        big = await http.post(url, json=too_big, headers=auth)
        assert big.status_code == 400
        assert "too big" in big.json()["error"]["message"]

        fake.add_rule(token="t", error="UNREGISTERED")
        gone = await http.post(url, json={"message": {"token": "t"}}, headers=auth)
        assert (gone.status_code, gone.json()["error"]["status"]) == (404, "NOT_FOUND")
        assert gone.json()["error"]["details"][0]["errorCode"] == "UNREGISTERED"


async def test_a_request_records_the_clients_port() -> None:
    plain = FcmFake(project_id=PROJECT)
    with plain.running_in_thread():
        where = urlsplit(plain.url)
        assert where.hostname is not None and where.port is not None
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        own_port = writer.get_extra_info("sockname")[1]
        writer.write(
            f"POST /v1/projects/{PROJECT}/messages:send HTTP/1.1\r\n"
            "host: fcm\r\ncontent-length: 2\r\n\r\n{}".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 401")
    assert [r.peer_port for r in plain.records()] == [own_port]
