"""aioapns's traps (app.delivery.providers.apns_protocol), driven through the sender, the
ledger and the real aioapns client into the APNs protocol fake."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import insert, select
from wavecast_tools.fakes.apns import ApnsFake, generate_apns_key, make_device_token
from wavecast_tools.fakes.faults import FaultRule
from wavecast_tools.fakes.tls import ensure_tls_files

from app.auth.models import Scope
from app.campaigns.schemas import Content
from app.campaigns.state import CampaignStatus
from app.control.plane import Control, provider_scope
from app.db.types import utcnow
from app.delivery.providers import apns
from app.delivery.providers.apns import ApnsProvider
from app.delivery.providers.apns_protocol import ApnsProtocol
from app.delivery.providers.base import Batch, Message, ResultKind
from app.delivery.sender import SenderDeps, pump
from app.devices import service as devices_service
from app.devices.models import Device
from app.devices.schemas import DeviceRegistration
from app.rollout import engine
from app.runtime import Runtime
from app.settings import ProviderMode, Settings
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body, campaign_status, create_and_start, deliveries
from workers.providers import ProviderSet, real_providers

TOPIC = "com.example.wavecast"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("apns-traps")
    tls = ensure_tls_files(root / "tls")
    key = generate_apns_key(root)
    production = ApnsFake(tls=tls, environment="production", topics=[TOPIC], keys=[key])
    with production.running_in_thread():
        yield {"fake": production, "key": key, "tls": tls}


def _fake(fake: dict[str, object]) -> ApnsFake:
    production = fake["fake"]
    assert isinstance(production, ApnsFake)
    return production


def _settings(db: Runtime, fake: dict[str, object]) -> Settings:
    production = _fake(fake)
    production.rulebook.clear()
    production.store.clear()
    key = fake["key"]
    return db.settings.model_copy(
        update={
            "provider": ProviderMode.real,
            "apns_key": key.path,  # type: ignore[attr-defined]
            "apns_key_id": key.key_id,  # type: ignore[attr-defined]
            "apns_team_id": key.team_id,  # type: ignore[attr-defined]
            "apns_topic": TOPIC,
            "apns_production_url": production.url,
            "apns_ca_file": fake["tls"].ca_file,  # type: ignore[attr-defined]
        }
    )


@pytest.fixture
async def providers(db: Runtime, fake: dict[str, object]) -> AsyncIterator[ProviderSet]:
    built = real_providers(_settings(db, fake))
    yield built
    await built.aclose()


def _tokens(n: int, tag: str = "") -> list[str]:
    return [make_device_token("production", f"{tag}{i}") for i in range(n)]


async def _campaign(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, tokens: list[str]
) -> uuid.UUID:
    now = utcnow()
    rows = [
        devices_service.registration_row(
            DeviceRegistration(token=t, platform="ios", apns_environment="production"),  # type: ignore[arg-type]
            now,
        )
        for t in tokens
    ]
    async with db.sessionmaker() as session:
        # QA phones: outside production a real provider reaches test devices only.
        await session.execute(
            insert(Device.__table__),  # type: ignore[attr-defined]
            [row | {"is_test_device": True} for row in rows],
        )
        await session.commit()
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    return await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )


def _deps(db: Runtime, settings: Settings, providers: ProviderSet) -> SenderDeps:
    return SenderDeps(settings, db.sessionmaker, Control(db.redis), providers.route, "traps")


async def _drive(deps: SenderDeps, db: Runtime, campaign_id: uuid.UUID, within: float) -> None:
    """Tick and pump as a worker does until the campaign completes (retries included)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        report = await engine.tick(db.sessionmaker, deps.control, deps.settings)
        if campaign_id in report.sendable:
            await pump(deps, campaign_id, budget_seconds=10)
        if await campaign_status(db, campaign_id) is CampaignStatus.completed:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"campaign {campaign_id} not completed within {within}s")


def _sends(production: ApnsFake) -> list[object]:
    return [r for r in production.records() if r.endpoint == "send"]


def _connections(providers: ProviderSet) -> list[ApnsProtocol]:
    provider = providers.by_platform["ios"]
    assert isinstance(provider, ApnsProvider)
    return [c for client in provider._clients.values() for c in client.pool.connections]  # type: ignore[misc]


def _assert_no_stream_state_left(providers: ProviderSet) -> None:
    connections = _connections(providers)
    assert connections, "the provider kept its connection"
    for connection in connections:
        assert connection.request_streams == {}
        assert connection.requests == {}
        assert connection.request_statuses == {}
        assert connection._statuses == {}
        assert connection._bodies == {}
        assert connection.free_channels._value == connection.free_channels.bound


async def test_more_refusals_than_one_flow_control_window_holds(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    fake: dict[str, object],
    providers: ProviderSet,
) -> None:
    # ~50 bytes a 410 body: 2,500 of them are twice a 64 KiB connection window. aioapns's own
    # protocol never returns the credit, so its connection stalls after ~1,200 refusals.
    production = _fake(fake)
    settings = _settings(db, fake)
    production.rulebook.add(FaultRule(error="Unregistered"))
    tokens = _tokens(2500)
    campaign_id = await _campaign(client, make_key, db, tokens)
    await _drive(_deps(db, settings, providers), db, campaign_id, within=120)

    rows = await deliveries(db, campaign_id)
    assert len(rows) == 2500
    assert Counter(r.status for r in rows) == {"invalid_token": 2500}
    assert {r.attempts for r in rows} == {1}, "no refusal timed out into a retry"
    sent = _sends(production)
    assert sorted(r.token for r in sent) == sorted(tokens)  # type: ignore[attr-defined]
    assert {r.status for r in sent} == {410}  # type: ignore[attr-defined]
    async with db.sessionmaker() as session:
        statuses = (
            await session.execute(select(Device.status).where(Device.token.in_(tokens)))  # type: ignore[attr-defined]
        ).scalars()
        assert Counter(statuses) == {"invalid": 2500}
    _assert_no_stream_state_left(providers)


async def test_no_stream_state_outlives_its_stream(
    db: Runtime, fake: dict[str, object], providers: ProviderSet
) -> None:
    production = _fake(fake)
    _settings(db, fake)
    refused = _tokens(40, "gone")
    for token in refused:
        production.rulebook.add(FaultRule(error="BadDeviceToken", token=token))
    accepted = _tokens(600, "ok")
    provider = providers.by_platform["ios"]
    batch = Batch(
        "c",
        Content.model_validate({"title": "Statement", "body": "Ready"}),
        [
            Message(i, uuid.uuid4(), token, "ios", None, "production")
            for i, token in enumerate(accepted + refused)
        ],
    )
    results = await provider.send(batch)
    assert Counter(r.kind for r in results) == {ResultKind.sent: 600, ResultKind.invalid_token: 40}
    # aioapns keeps one stream entry per 200 for the life of the connection.
    _assert_no_stream_state_left(providers)


async def test_request_bodies_wait_for_flow_control_credit_instead_of_failing(
    db: Runtime, fake: dict[str, object], providers: ProviderSet
) -> None:
    # A server that opens no more than HTTP/2's default 64 KiB connection window (or is slow to
    # send its WINDOW_UPDATE): 1,000 concurrent ~1 KiB bodies are 15 times that window. h2
    # raises FlowControlError for a body the window cannot take; aioapns's pool turned it into
    # MaxAttemptsExceeded (a retry for the ledger) and left the stream half-open with its
    # channel taken. Each body must wait for the credit the server gives back as it reads.
    production = _fake(fake)
    _settings(db, fake)
    wide = production.server.h2_connection_window
    production.server.h2_connection_window = 65535
    try:
        tokens = _tokens(1500, "window")
        provider = providers.by_platform["ios"]
        batch = Batch(
            "c",
            Content.model_validate({"title": "Statement", "body": "Ready " * 160}),
            [Message(i, uuid.uuid4(), t, "ios", None, "production") for i, t in enumerate(tokens)],
        )
        results = await provider.send(batch)
    finally:
        production.server.h2_connection_window = wide
    assert Counter(r.kind for r in results) == {ResultKind.sent: 1500}
    assert Counter(r.token for r in _sends(production)) == Counter(tokens)  # type: ignore[attr-defined]
    _assert_no_stream_state_left(providers)


async def test_a_reset_stream_is_a_retry_at_once_and_spares_the_connection(
    db: Runtime, fake: dict[str, object], providers: ProviderSet
) -> None:
    production = _fake(fake)
    _settings(db, fake)
    tokens = _tokens(20, "reset")
    production.rulebook.add(FaultRule(action="reset", token=tokens[3], count=1))
    provider = providers.by_platform["ios"]
    batch = Batch(
        "c",
        Content.model_validate({"title": "Statement", "body": "Ready"}),
        [Message(i, uuid.uuid4(), t, "ios", None, "production") for i, t in enumerate(tokens)],
    )
    started = time.monotonic()
    results = {r.delivery_id: r for r in await provider.send(batch)}
    # aioapns ignores RST_STREAM: the request would hang until our timeout.
    assert time.monotonic() - started < apns.REQUEST_TIMEOUT_SECONDS
    assert results[3].kind is ResultKind.retry and results[3].error_code == "connection"
    assert {r.kind for i, r in results.items() if i != 3} == {ResultKind.sent}
    _assert_no_stream_state_left(providers)


async def test_a_timeout_is_one_bounded_retry_and_the_late_answer_harms_nobody(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    fake: dict[str, object],
    providers: ProviderSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(apns, "REQUEST_TIMEOUT_SECONDS", 0.5)
    production = _fake(fake)
    settings = _settings(db, fake)
    tokens = _tokens(30, "slow")
    slow = tokens[7]
    production.rulebook.add(FaultRule(token=slow, latency=1.5, count=1))
    campaign_id = await _campaign(client, make_key, db, tokens)
    await _drive(_deps(db, settings, providers), db, campaign_id, within=60)

    rows = {r.device_id: r for r in await deliveries(db, campaign_id)}
    async with db.sessionmaker() as session:
        ids = dict(
            (
                await session.execute(
                    select(Device.token, Device.id).where(Device.token.in_(tokens))
                )  # type: ignore[attr-defined]
            ).all()
        )
    assert {r.status for r in rows.values()} == {"sent"}
    assert rows[ids[slow]].attempts == 2
    assert {rows[ids[t]].attempts for t in tokens if t != slow} == {1}, (
        "the late answer did not break the connection the others shared"
    )
    per_token = Counter(r.token for r in _sends(production))  # type: ignore[attr-defined]
    assert per_token == {t: rows[ids[t]].attempts for t in tokens}
    _assert_no_stream_state_left(providers)


async def test_a_dropped_connection_is_retried_by_the_ledger_never_behind_its_back(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    fake: dict[str, object],
    providers: ProviderSet,
) -> None:
    production = _fake(fake)
    settings = _settings(db, fake)
    tokens = _tokens(50, "drop")
    production.rulebook.add(FaultRule(action="drop", token=tokens[11], count=1))
    campaign_id = await _campaign(client, make_key, db, tokens)
    await _drive(_deps(db, settings, providers), db, campaign_id, within=60)

    rows = await deliveries(db, campaign_id)
    async with db.sessionmaker() as session:
        token_of = dict((await session.execute(select(Device.id, Device.token))).all())
    assert {r.status for r in rows} == {"sent"}
    assert max(r.attempts for r in rows) == 2, "the dropped requests came back once, as retries"
    sends = _sends(production)
    # Every request the fake saw is an attempt the ledger counted (requests failed by the drop
    # before the fake read them are attempts too: the client cannot know they never arrived).
    # aioapns's pool would have re-sent them itself, up to five times, unseen by the ledger.
    attempts = {token_of[r.device_id]: r.attempts for r in rows}
    seen = Counter(r.token for r in sends)  # type: ignore[attr-defined]
    assert all(seen[t] <= attempts[t] for t in tokens), (seen, attempts)
    # A request whose answer was lost with the connection may have been accepted: its retry
    # can deliver it twice (SPEC §3 retries timeouts and drops). Never more than the ledger's
    # attempts, and every device at least once.
    delivered = Counter(r.token for r in sends if r.status == 200)  # type: ignore[attr-defined]
    assert all(1 <= delivered[t] <= attempts[t] for t in tokens), (delivered, attempts)


async def test_without_retry_after_apns_refusals_back_off_and_503_pauses_all_of_apns(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    fake: dict[str, object],
    providers: ProviderSet,
) -> None:
    production = _fake(fake)
    settings = _settings(db, fake)
    busy, down, fine = _tokens(3, "backoff")
    production.rulebook.add(FaultRule(error="TooManyRequests", token=busy, count=1))
    production.rulebook.add(FaultRule(error="ServiceUnavailable", token=down, count=1))
    campaign_id = await _campaign(client, make_key, db, [busy, down, fine])
    deps = _deps(db, settings, providers)
    await engine.tick(db.sessionmaker, deps.control, settings)
    before = utcnow()
    await pump(deps, campaign_id, budget_seconds=10)

    async with db.sessionmaker() as session:
        token_of = dict((await session.execute(select(Device.id, Device.token))).all())
    rows = {token_of[r.device_id]: r for r in await deliveries(db, campaign_id)}
    assert rows[fine].status == "sent"
    assert rows[busy].status == rows[down].status == "retrying"
    assert rows[busy].error_code == "TooManyRequests"
    # First retry: 2 s ± 20 % (the sender's backoff), a device-level refusal.
    assert (
        before + timedelta(seconds=1.6)
        <= rows[busy].next_attempt_at  # type: ignore[operator]
        <= utcnow() + timedelta(seconds=2.4)
    )
    # The service is down: the row waits at least the pause, and so does all of APNs.
    assert rows[down].next_attempt_at >= before + timedelta(  # type: ignore[operator]
        seconds=apns.UNAVAILABLE_PAUSE_SECONDS
    )
    blocked = await deps.control.throttle.blocked_for(provider_scope("apns"))
    assert 0 < blocked <= apns.UNAVAILABLE_PAUSE_SECONDS
