"""The real aioapns 4.0 client (token auth, HTTP/2 over TLS) against the APNs fake.

The fakes run on the test's own event loop: aioapns never blocks it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioapns
import pytest
from aioapns import NotificationRequest, PushType
from aioapns.exceptions import MaxAttemptsExceeded
from wavecast_tools.fakes.apns import ApnsFake, ApnsKey, generate_apns_key
from wavecast_tools.fakes.apns_validation import Environment, make_device_token
from wavecast_tools.fakes.clients import apns_client_for
from wavecast_tools.fakes.tls import TlsFiles, ensure_tls_files

from .support import raw_client, wait_until

TOPIC = "com.example.wavecast"
ALERT = {"aps": {"alert": {"title": "Wave 1", "body": "ęśąćż"}}}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls_files(tmp_path_factory.mktemp("apns-tls"))


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ApnsKey:
    return generate_apns_key(tmp_path_factory.mktemp("apns-key"))


@pytest.fixture(scope="module")
async def sandbox(tls: TlsFiles, key: ApnsKey) -> AsyncIterator[ApnsFake]:
    async with ApnsFake(tls=tls, keys=[key], topics=[TOPIC], environment="sandbox") as fake:
        yield fake


@pytest.fixture(scope="module")
async def production(tls: TlsFiles, key: ApnsKey) -> AsyncIterator[ApnsFake]:
    async with ApnsFake(tls=tls, keys=[key], topics=[TOPIC], environment="production") as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_fakes(sandbox: ApnsFake, production: ApnsFake) -> Iterator[None]:
    yield
    sandbox.reset()
    production.reset()


def make_client(fake: ApnsFake, key: ApnsKey, tls: TlsFiles, **kwargs: Any) -> aioapns.APNs:
    return apns_client_for(
        fake.url,
        key_pem=key.private_key_pem,
        key_id=key.key_id,
        team_id=key.team_id,
        topic=TOPIC,
        ca_file=tls.ca_file,
        use_sandbox=fake.environment == "sandbox",
        **kwargs,
    )


@pytest.fixture
async def client(sandbox: ApnsFake, key: ApnsKey, tls: TlsFiles) -> AsyncIterator[aioapns.APNs]:
    apns = make_client(sandbox, key, tls)
    yield apns
    apns.pool.close()


def alert(token: str, **kwargs: Any) -> NotificationRequest:
    kwargs.setdefault("push_type", PushType.ALERT)
    return NotificationRequest(device_token=token, message=kwargs.pop("message", ALERT), **kwargs)


async def test_success_is_recorded_with_token_headers_and_payload(
    client: aioapns.APNs, sandbox: ApnsFake
) -> None:
    token = sandbox.device_token("ok")
    before = time.monotonic()
    request = alert(token, time_to_live=60, priority=10, collapse_key="wave-1")
    result = await client.send_notification(request)

    assert result.is_successful
    assert result.notification_id == request.notification_id
    [record] = sandbox.sends()
    assert record.token == token
    assert record.status == 200
    assert record.message_id == request.notification_id
    assert record.protocol == "h2"
    assert record.payload == ALERT
    assert before <= record.monotonic <= time.monotonic()
    headers = record.headers
    assert headers["apns-topic"] == TOPIC
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "wave-1"
    assert abs(int(headers["apns-expiration"]) - (time.time() + 60)) < 5
    assert headers["authorization"].startswith("bearer ")
    # Sandbox answers carry the development-only apns-unique-id.
    assert "apns-unique-id" in dict(record.response_headers)


async def test_a_token_only_reaches_its_own_environment(
    sandbox: ApnsFake, production: ApnsFake, key: ApnsKey, tls: TlsFiles
) -> None:
    clients: dict[Environment, aioapns.APNs] = {
        "sandbox": make_client(sandbox, key, tls),
        "production": make_client(production, key, tls),
    }
    try:
        for env in ("sandbox", "production"):
            result = await clients[env].send_notification(alert(make_device_token(env, 1)))
            assert result.is_successful
        crossed = await clients["sandbox"].send_notification(
            alert(make_device_token("production", 2))
        )
    finally:
        for apns in clients.values():
            apns.pool.close()

    assert (crossed.status, crossed.description) == ("400", "BadDeviceToken")
    assert [r.token for r in production.sends()] == [make_device_token("production", 1)]
    assert [r.token for r in sandbox.sends()] == [
        make_device_token("sandbox", 1),
        make_device_token("production", 2),
    ]
    assert [r.status for r in sandbox.sends()] == [200, 400]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "reason"),
    [
        ({"device_token": "not-hex"}, "400", "BadDeviceToken"),
        ({"apns_topic": "com.example.other"}, "400", "BadTopic"),
        ({"collapse_key": "c" * 65}, "400", "BadCollapseId"),
        ({"priority": 7}, "400", "BadPriority"),
        ({"push_type": PushType.BACKGROUND, "priority": 10}, "400", "BadPriority"),
        ({"message": {"aps": {"alert": "x" * 4100}}}, "413", "PayloadTooLarge"),
        ({"message": {"custom": 1}}, "400", "BadPayload"),
    ],
)
async def test_invalid_requests_come_back_as_apple_reasons(
    client: aioapns.APNs,
    sandbox: ApnsFake,
    request_kwargs: dict[str, Any],
    status: str,
    reason: str,
) -> None:
    token = request_kwargs.pop("device_token", sandbox.device_token("v"))
    result = await client.send_notification(alert(token, **request_kwargs))
    assert (result.status, result.description) == (status, reason)
    assert sandbox.sends()[-1].reason == reason


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("Unregistered", "410"),
        ("BadDeviceToken", "400"),
        ("DeviceTokenNotForTopic", "400"),
        ("TooManyRequests", "429"),
        ("InternalServerError", "500"),
        ("ServiceUnavailable", "503"),
        ("Shutdown", "503"),
    ],
)
async def test_injected_errors_reach_aioapns(
    client: aioapns.APNs, sandbox: ApnsFake, error: str, status: str
) -> None:
    token = sandbox.device_token(error)
    sandbox.add_rule(token=token, error=error)
    result = await client.send_notification(alert(token))
    assert (result.status, result.description) == (status, error)
    if status == "410":
        # Apple's 410 body: {"reason": "Unregistered", "timestamp": <ms since epoch>}
        assert result.timestamp is not None
        assert abs(result.timestamp / 1000 - time.time()) < 5


async def test_provider_token_from_an_unknown_key_is_refused(
    sandbox: ApnsFake, key: ApnsKey, tls: TlsFiles
) -> None:
    # Same key id and team, different private key: the signature cannot verify.
    impostor = generate_apns_key(key_id=key.key_id, team_id=key.team_id)
    wrong_team = ApnsKey(key.key_id, "TEAM000000", key.private_key_pem, key.public_key_pem)
    unknown_kid = ApnsKey("KEY0000000", key.team_id, key.private_key_pem, key.public_key_pem)
    for bad in (impostor, wrong_team, unknown_kid):
        apns = make_client(sandbox, bad, tls)
        try:
            result = await apns.send_notification(alert(sandbox.device_token(1)))
        finally:
            apns.pool.close()
        assert (result.status, result.description) == ("403", "InvalidProviderToken")


async def test_stale_provider_token_is_expired(key: ApnsKey, tls: TlsFiles) -> None:
    async with ApnsFake(tls=tls, keys=[key], topics=[TOPIC], token_max_age=-1) as strict:
        apns = make_client(strict, key, tls)
        try:
            result = await apns.send_notification(alert(strict.device_token(1)))
        finally:
            apns.pool.close()
    assert (result.status, result.description) == ("403", "ExpiredProviderToken")


async def test_dropped_connection_is_silently_resent_by_aioapns(
    client: aioapns.APNs, sandbox: ApnsFake
) -> None:
    token = sandbox.device_token("drop-once")
    sandbox.add_rule(token=token, action="drop", count=1)
    result = await client.send_notification(alert(token))

    assert result.is_successful
    first, second = sandbox.sends()
    assert (first.action, second.status) == ("drop", 200)
    assert first.connection_id != second.connection_id


async def test_goaway_is_silently_resent_by_aioapns(
    client: aioapns.APNs, sandbox: ApnsFake
) -> None:
    token = sandbox.device_token("goaway-once")
    sandbox.add_rule(token=token, action="goaway", count=1)
    result = await client.send_notification(alert(token))

    assert result.is_successful
    assert [r.action for r in sandbox.sends()] == ["goaway", "answer"]


async def test_connection_dropped_every_time_ends_in_max_attempts(
    client: aioapns.APNs, sandbox: ApnsFake
) -> None:
    token = sandbox.device_token("always-drop")
    sandbox.add_rule(token=token, action="drop")
    with pytest.raises(MaxAttemptsExceeded):
        await client.send_notification(alert(token))
    # max_connection_attempts=5 (aioapns default): five identical requests reached the server.
    assert len(sandbox.sends()) == 5


async def test_stream_reset_hangs_until_the_idle_connection_is_closed(
    sandbox: ApnsFake, key: ApnsKey, tls: TlsFiles
) -> None:
    # aioapns ignores RST_STREAM: the request waits until the connection's inactivity timer
    # (10 s by default, restarted by every send) closes it, then it is resent.
    apns = make_client(sandbox, key, tls)
    base = apns.pool.protocol_class
    apns.pool.protocol_class = type("QuickIdle", (base,), {"INACTIVITY_TIME": 0.5})
    token = sandbox.device_token("reset-once")
    sandbox.add_rule(token=token, action="reset", count=1)
    try:
        send = asyncio.ensure_future(apns.send_notification(alert(token)))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(send), 0.3)
        result = await asyncio.wait_for(send, 5)
    finally:
        apns.pool.close()
    assert result.is_successful
    assert [r.action for r in sandbox.sends()] == ["reset", "answer"]


async def test_added_latency_is_waited_out_aioapns_has_no_timeout(
    client: aioapns.APNs, sandbox: ApnsFake
) -> None:
    token = sandbox.device_token("slow")
    sandbox.add_rule(token=token, latency=0.3, count=1)
    started = time.monotonic()
    result = await client.send_notification(alert(token))
    assert result.is_successful
    answered = time.monotonic()
    assert answered - started >= 0.3
    record = sandbox.sends()[0]
    assert record.delay == 0.3
    # The answer's own instant is recorded: after the delay, before the client had it.
    assert record.answered is not None
    assert record.monotonic + 0.3 <= record.answered <= answered


async def test_5xx_storm_by_probability_and_by_period(
    client: aioapns.APNs, sandbox: ApnsFake
) -> None:
    storm = sandbox.add_rule(error="ServiceUnavailable", probability=0.5)
    results = await asyncio.gather(
        *(client.send_notification(alert(sandbox.device_token(i))) for i in range(200))
    )
    failed = sum(r.status == "503" for r in results)
    assert failed == storm.applied
    assert 50 < failed < 150
    sandbox.remove_rule(storm.id)

    sandbox.add_rule(error="InternalServerError", seconds=0.3)
    during = await client.send_notification(alert(sandbox.device_token("during")))
    await asyncio.sleep(0.35)
    after = await client.send_notification(alert(sandbox.device_token("after")))
    assert (during.status, after.status) == ("500", "200")


async def test_aioapns_loses_its_connection_after_64k_of_error_bodies(
    sandbox: ApnsFake, key: ApnsKey, tls: TlsFiles
) -> None:
    """aioapns never returns HTTP/2 flow-control window for the bodies it reads.

    After ~65,535 bytes of error bodies (2,340 x ``{"reason": "BadDeviceToken"}``) the server
    can only send part of the next body; aioapns ``json.loads`` the fragment, the connection dies
    and every request pending on it is sent again on a new connection.
    """
    apns = make_client(sandbox, key, tls, max_connections=1)
    sandbox.add_rule(token_prefix="dead", error="BadDeviceToken")
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(apns.send_notification(alert("dead" + f"{i:060x}")) for i in range(2500))
            ),
            20,
        )
    finally:
        apns.pool.close()
    assert {r.description for r in results} == {"BadDeviceToken"}
    records = sandbox.sends()
    assert len({r.connection_id for r in records}) >= 2
    assert len(records) >= 2500


async def test_retry_after_and_bodies_on_the_wire(sandbox: ApnsFake, tls: TlsFiles) -> None:
    """What aioapns does not expose (response headers), checked with a bare HTTP/2 client."""
    token = sandbox.device_token("raw")
    sandbox.add_rule(token=token, error="TooManyRequests", retry_after=3)
    async with raw_client(tls.ca_file) as http:
        response = await http.post(f"{sandbox.url}/3/device/{token}", content=b"{}")
        assert response.http_version == "HTTP/2"
        # Authentication comes first, as on Apple's servers.
        assert (response.status_code, response.json()) == (403, {"reason": "MissingProviderToken"})
        assert "apns-id" in response.headers

    record = sandbox.sends()[0]
    assert record.reason == "MissingProviderToken"
    # The rule did not fire on an unauthenticated request.
    assert sandbox.rules()[0].applied == 0


async def test_raw_requests_hit_header_rules(
    sandbox: ApnsFake, key: ApnsKey, tls: TlsFiles
) -> None:
    import jwt

    bearer = "bearer " + jwt.encode(
        {"iss": key.team_id, "iat": int(time.time())},
        key.private_key_pem,
        algorithm="ES256",
        headers={"kid": key.key_id},
    )
    token = sandbox.device_token("raw2")
    good = {"authorization": bearer, "apns-topic": TOPIC, "apns-push-type": "alert"}
    body = json.dumps(ALERT).encode()
    no_push_type = {k: v for k, v in good.items() if k != "apns-push-type"}
    cases: list[tuple[str, dict[str, str], bytes, int, str | None]] = [
        ("POST", good, body, 200, None),
        ("POST", {**good, "apns-topic": ""}, body, 400, "MissingTopic"),
        ("POST", no_push_type, body, 400, "InvalidPushType"),
        ("POST", {**good, "apns-expiration": "tomorrow"}, body, 400, "BadExpirationDate"),
        ("POST", good, b"", 400, "PayloadEmpty"),
        ("GET", good, b"", 405, "MethodNotAllowed"),
    ]
    async with raw_client(tls.ca_file) as http:
        for method, headers, content, status, reason in cases:
            response = await http.request(
                method, f"{sandbox.url}/3/device/{token}", headers=headers, content=content
            )
            assert response.status_code == status, (method, headers, reason)
            if reason is not None:
                assert response.json() == {"reason": reason}
        sandbox.add_rule(token=token, error="TooManyRequests", retry_after=3)
        limited = await http.post(f"{sandbox.url}/3/device/{token}", headers=good, content=body)
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
        bad_path = await http.post(f"{sandbox.url}/3/devices/{token}", headers=good, content=body)
        assert (bad_path.status_code, bad_path.json()["reason"]) == (404, "BadPath")


async def test_introspection_reads_records_and_sets_rules(
    client: aioapns.APNs, sandbox: ApnsFake, tls: TlsFiles
) -> None:
    token = sandbox.device_token("introspect")
    async with raw_client(tls.ca_file) as http:
        added = await http.post(
            f"{sandbox.url}/_fake/rules", json={"token": token, "error": "Unregistered"}
        )
        assert added.status_code == 200
        result = await client.send_notification(alert(token))
        assert result.description == "Unregistered"
        page = (await http.get(f"{sandbox.url}/_fake/records?endpoint=send")).json()
        assert [(r["token"], r["status"], r["reason"]) for r in page["records"]] == [
            (token, 410, "Unregistered")
        ]
        assert page["records"][0]["payload"] == ALERT
        rules = (await http.get(f"{sandbox.url}/_fake/rules")).json()["rules"]
        assert rules[0]["applied"] == 1
        since = page["last_seq"]
        await client.send_notification(alert(sandbox.device_token("next")))
        newer = (await http.get(f"{sandbox.url}/_fake/records?since={since}")).json()
        assert [r["seq"] for r in newer["records"]] == [since + 1]
        assert (await http.post(f"{sandbox.url}/_fake/reset")).status_code == 200
        await wait_until(lambda: not sandbox.records() and not sandbox.rules())
        config = (await http.get(f"{sandbox.url}/_fake/config")).json()
        assert config["environment"] == "sandbox"
        bad = await http.post(f"{sandbox.url}/_fake/rules", json={"error": "Nope"})
        assert bad.status_code == 400
