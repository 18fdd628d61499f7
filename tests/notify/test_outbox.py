"""The outbox against a real database and the Slack fake, through the real `slack_sdk`:
notifications commit with their decisions, reach the channel in the log's order, once each,
whatever Slack does in between."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from wavecast_tools.fakes.slack import SlackFake

from app.audit import service as audit
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.notify import repository
from app.notify.dispatch import OutboxDeps, dispatch
from app.notify.kinds import PROVIDER_HALT_PREFIX, Kind
from app.notify.models import OutboxMessage, OutboxStatus
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.notify.support import CHANNEL, Clock, attempts, slack_rows
from tests.support import add_devices, campaign_body, create_and_start


async def operator(make_key: KeyMaker) -> dict[str, str]:
    return bearer(
        await make_key(
            Scope.campaigns_write,
            Scope.campaigns_operate,
            Scope.campaigns_read,
            Scope.kill,
            name="ops",
        )
    )


async def started_campaign(
    client: httpx.AsyncClient, headers: dict[str, str], db: Runtime
) -> uuid.UUID:
    await add_devices(db, 5)
    return await create_and_start(client, headers, campaign_body())


def clock(deps: OutboxDeps) -> Clock:
    assert isinstance(deps.clock, Clock)
    return deps.clock


async def test_a_decision_writes_its_notification_and_a_refused_one_writes_none(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = await operator(make_key)
    campaign = await started_campaign(client, headers, db)
    killed = await client.post(
        f"/v1/campaigns/{campaign}/kill", json={"reason": "wrong segment"}, headers=headers
    )
    assert killed.status_code == 200, killed.text
    again = await client.post(f"/v1/campaigns/{campaign}/pause", headers=headers)
    assert again.status_code == 409
    rows = await slack_rows(db, drafts=True)
    assert [r.kind for r in rows] == [
        Kind.approval_requested,  # the draft's creation: asked at send time whether it waits
        Kind.campaign_started,
        Kind.campaign_killed,
    ]
    rows = rows[1:]
    assert all(r.campaign_id == str(campaign) for r in rows)
    assert all(r.status == OutboxStatus.pending for r in rows)

    # A transaction that rolls back leaves neither the event nor its notification.
    async def failing_decision() -> None:
        async with unit_of_work(db.sessionmaker) as session:
            audit.record(
                session, SYSTEM, "campaign.kill", subject_type="campaign", subject_id=campaign
            )
            raise RuntimeError("the decision failed")

    with pytest.raises(RuntimeError):
        await failing_decision()
    assert len(await slack_rows(db, drafts=True)) == 3


async def test_each_decision_reaches_the_channel_in_order_naming_its_audit_event(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    headers = await operator(make_key)
    admin = bearer(await make_key(Scope.admin, name="head of ops"))
    campaign = await started_campaign(client, headers, db)
    for path, body in (
        ("pause", {"reason": "checking the copy"}),
        ("resume", {"reason": "copy is fine"}),
    ):
        answer = await client.post(f"/v1/campaigns/{campaign}/{path}", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
    assert (
        await client.post("/v1/kill-switch", json={"reason": "app down"}, headers=headers)
    ).status_code == 200
    assert (
        await client.post("/v1/kill-switch/release", json={"reason": "app back"}, headers=admin)
    ).status_code == 200
    assert (
        await client.post(
            f"/v1/campaigns/{campaign}/kill", json={"reason": "enough"}, headers=headers
        )
    ).status_code == 200

    report = await dispatch(outbox)
    assert report.sent == 6 and report.retried == 0
    rows = await slack_rows(db)
    assert [r.kind for r in rows] == [
        Kind.campaign_started,
        Kind.campaign_paused,
        Kind.campaign_resumed,
        Kind.switch_engaged,
        Kind.switch_released,
        Kind.campaign_killed,
    ]
    posted = slack_fake.posted(CHANNEL)
    assert len(posted) == 6
    for row, message in zip(rows, posted, strict=True):
        assert row.status == OutboxStatus.sent
        assert row.slack_ts == message.ts and row.slack_channel == CHANNEL
        assert f"audit #{row.audit_sequence}" in (message.text or "")
        blocks = str(message.blocks)
        assert f"audit #{row.audit_sequence}" in blocks
        if row.kind != Kind.switch_engaged and row.kind != Kind.switch_released:
            assert f"https://wavecast.bank.example/ui/campaigns/{campaign}" in blocks
            assert "November statement" in blocks
    engaged = posted[3]
    assert "[CRITICAL]" in (engaged.text or "")
    assert "Campaigns paused*\\n1" in str(engaged.blocks)
    killed = posted[5]
    assert "enough" in str(killed.blocks) and "[CRITICAL]" in (killed.text or "")
    # The log points at the channel: each event lists its message's timestamp.
    listed = (
        await client.get("/v1/audit", params={"action": "campaign.kill"}, headers=headers)
    ).json()["items"][0]
    assert (listed["sequence"], listed["slack_ts"]) == (rows[-1].audit_sequence, rows[-1].slack_ts)
    assert listed["slack_channel"] == CHANNEL
    created = (
        await client.get("/v1/audit", params={"action": "campaign.created"}, headers=headers)
    ).json()["items"][0]
    assert created["slack_ts"] is None  # not posted: no approval was awaited
    # Nothing left: a second run sends nothing again.
    assert (await dispatch(outbox)).sent == 0
    assert len(slack_fake.posted()) == 6


async def test_kinds_recorded_by_the_engine_and_the_checks_are_told_with_their_facts(
    db: Runtime, outbox: OutboxDeps, slack_fake: SlackFake
) -> None:
    """Actions as the engine, the checks, the guard, the sender and approvals record them."""
    campaign = str(uuid.uuid4())
    async with unit_of_work(db.sessionmaker) as session:
        record = lambda action, **kw: audit.record(  # noqa: E731
            session, SYSTEM, action, subject_type="campaign", subject_id=campaign, **kw
        )
        record(
            "campaign.wave_released",
            after={"wave": 0, "percent": "1", "audience_size": 900, "target": 9, "added": 9},
        )
        record(
            "campaign.wave_checks_paused",
            reason="check 'backend errors': 0.31 is not < 0.02",
            after={
                "wave": 0,
                "results": [
                    {
                        "check": "backend errors",
                        "result": "fail",
                        "value": 0.31,
                        "detail": "lt 0.02",
                    }
                ],
            },
        )
        record("campaign.auto_pause", reason="check 'backend errors': 0.31 is not < 0.02")
    async with unit_of_work(db.sessionmaker) as session:
        audit.record(
            session,
            SYSTEM,
            "campaign.auto_pause",
            subject_type="campaign",
            subject_id=campaign,
            reason=f"{PROVIDER_HALT_PREFIX} (THIRD_PARTY_AUTH_ERROR): APNs certificate rejected",
        )
        audit.record(
            session,
            SYSTEM,
            "guard.refused",
            subject_type="campaign",
            subject_id=campaign,
            reason="start refused by the environment guard",
            after={
                "findings": [
                    {"field": "content.title", "message": "looks like test content: 'test'"}
                ]
            },
        )
    await dispatch(outbox)
    rows = await slack_rows(db)
    assert [r.kind for r in rows] == [
        Kind.wave_released,
        Kind.check_failed,
        Kind.provider_halted,
        Kind.guard_refused,
    ]
    texts = [str(m.blocks) for m in slack_fake.posted()]
    assert "Wave*\\n1 (1 %)" in texts[0] and "9 of 900" in texts[0]
    assert "0.31" in texts[1] and "lt 0.02" in texts[1] and "is not &lt; 0.02" in texts[1]
    assert "APNs certificate rejected" in texts[2] and ":red_circle:" in texts[2]
    assert "looks like test content" in texts[3]


async def test_slack_down_for_a_while_then_back_loses_nothing_and_doubles_nothing(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    headers = await operator(make_key)
    campaign = await started_campaign(client, headers, db)
    await client.post(f"/v1/campaigns/{campaign}/pause", json={"reason": "one"}, headers=headers)
    await client.post(f"/v1/campaigns/{campaign}/resume", json={"reason": "two"}, headers=headers)

    # Slack answers 500, then 503: the first message backs off, the others wait behind it.
    slack_fake.add_rule(error="server_error", count=1)
    slack_fake.add_rule(error="service_unavailable", count=1)
    report = await dispatch(outbox)
    assert (report.sent, report.retried) == (0, 1)
    assert await dispatch(outbox) == type(report)()  # backing off: nothing due yet
    clock(outbox).move(1.1)
    assert (await dispatch(outbox)).retried == 1
    # Then Slack is unreachable altogether (connection refused).
    port = slack_fake.port
    await slack_fake.stop()
    clock(outbox).move(2.1)
    assert (await dispatch(outbox)).retried == 1
    rows = await slack_rows(db)
    assert rows[0].attempts == 3 and rows[0].status == OutboxStatus.pending
    assert "ClientConnectorError" in (rows[0].last_error or "") or "Connect" in (
        rows[0].last_error or ""
    )
    assert [r.attempts for r in rows[1:]] == [0, 0]

    # Back: everything goes, in order, once.
    async with SlackFake(port=port) as back:
        clock(outbox).move(4.1)
        assert (await dispatch(outbox)).sent == 3
        await dispatch(outbox)
        rows = await slack_rows(db)
        assert [m.ts for m in back.posted()] == [r.slack_ts for r in rows]
        assert len(back.posted()) == 3
    tries = await attempts(db, rows[0].id or 0)
    assert [(a.outcome, a.status_code) for a in tries] == [
        ("retry", 500),
        ("retry", 503),
        ("retry", None),
        ("sent", 200),
    ]
    assert all(a.retry_at is not None for a in tries[:3])


async def test_rate_limited_waits_as_long_as_slack_asks(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    headers = await operator(make_key)
    campaign = await started_campaign(client, headers, db)
    await client.post(f"/v1/campaigns/{campaign}/pause", json={"reason": "x"}, headers=headers)
    slack_fake.add_rule(error="ratelimited", retry_after=30, count=1)
    before = clock(outbox)()
    assert (await dispatch(outbox)).retried == 1
    rows = await slack_rows(db)
    assert rows[0].next_attempt_at >= before + timedelta(seconds=30)
    assert rows[0].last_error == "ratelimited"
    assert len(slack_fake.records()) == 1  # the second message was not tried behind it
    clock(outbox).move(20)
    assert (await dispatch(outbox)).sent == 0
    clock(outbox).move(11)
    assert (await dispatch(outbox)).sent == 2
    first = slack_fake.posted()[0].text or ""
    assert first.startswith("[INFO] Campaign started")


async def test_a_message_slack_refuses_for_good_fails_alone(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    headers = await operator(make_key)
    campaign = await started_campaign(client, headers, db)
    await client.post(f"/v1/campaigns/{campaign}/pause", json={"reason": "x"}, headers=headers)
    slack_fake.add_rule(error="invalid_blocks", count=1)
    report = await dispatch(outbox)
    assert (report.sent, report.failed) == (1, 1)
    rows = await slack_rows(db)
    assert [r.status for r in rows] == [OutboxStatus.failed, OutboxStatus.sent]
    assert rows[0].last_error == "invalid_blocks"


async def test_without_slack_configured_notifications_are_kept_and_marked_skipped(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = await operator(make_key)
    await started_campaign(client, headers, db)
    deps = OutboxDeps.build(db.settings, db.sessionmaker)
    try:
        assert (await dispatch(deps)).skipped == 2  # the draft's note and the start
    finally:
        await deps.aclose()
    assert [r.status for r in await slack_rows(db, drafts=True)] == [OutboxStatus.skipped] * 2


async def test_workers_dispatching_at_once_send_each_message_once(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    headers = await operator(make_key)
    campaign = await started_campaign(client, headers, db)
    for i in range(6):
        await client.post(
            f"/v1/campaigns/{campaign}/pause", json={"reason": f"p{i}"}, headers=headers
        )
        await client.post(
            f"/v1/campaigns/{campaign}/resume", json={"reason": f"r{i}"}, headers=headers
        )
    slack_fake.add_rule(latency=0.05)
    others = [OutboxDeps.build(outbox.settings, db.sessionmaker) for _ in range(3)]
    try:
        for _ in range(5):
            await asyncio.gather(dispatch(outbox), *(dispatch(o) for o in others))
    finally:
        for other in others:
            await other.aclose()
    rows = await slack_rows(db)
    assert len(rows) == 13
    assert all(r.status == OutboxStatus.sent for r in rows)
    posted = slack_fake.posted()
    assert [m.ts for m in posted] == [r.slack_ts for r in rows]


class _SlowClock(Clock):
    """Every reading is `step` seconds after the one before: a run whose calls are slow."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def __call__(self) -> datetime:
        self.move(self.step)
        return super().__call__()


async def test_a_run_hands_back_what_its_claim_has_no_time_left_for(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    headers = await operator(make_key)
    campaign = await started_campaign(client, headers, db)
    for n in range(4):
        for path in ("pause", "resume"):
            answer = await client.post(
                f"/v1/campaigns/{campaign}/{path}", json={"reason": f"r{n}"}, headers=headers
            )
            assert answer.status_code == 200, answer.text
    total = len(await slack_rows(db))
    assert total == 9  # started, then 4 pauses and 4 resumes
    # Each reading of the clock is 8 s after the last: a claim of SLACK_LEASE (70 s) has room
    # for a few messages, never for all nine.
    outbox.clock = _SlowClock(8)
    first = await dispatch(outbox)
    assert 0 < first.sent < total
    rows = await slack_rows(db)
    left = [r for r in rows if r.status != OutboxStatus.sent]
    assert len(left) == total - first.sent
    # What was handed back is free for the next run at once, not when the claim runs out.
    assert all(r.claim_token is None and r.claimed_until is None for r in left)
    for _ in range(total):
        if (await dispatch(outbox)).sent == 0:
            break
    rows = await slack_rows(db)
    assert all(r.status == OutboxStatus.sent for r in rows)
    posted = slack_fake.posted(CHANNEL)
    assert len(posted) == total  # nothing posted twice
    assert [m.ts for m in posted] == [r.slack_ts for r in rows]  # and in the log's order


async def test_a_run_with_nothing_due_claims_nothing_and_one_due_message_is_found(
    db: Runtime,
) -> None:
    """`anything_due`, the read a run starts with: only a pending message whose time has
    come counts, whichever lane it is in."""
    now = utcnow()

    async def due(at: datetime) -> bool:
        async with db.sessionmaker() as session:
            return await repository.anything_due(session, now=at)

    assert not await due(now)
    rows = [  # (destination, status, due in seconds)
        ("slack", OutboxStatus.sent, -300),
        ("slack", OutboxStatus.failed, -300),
        ("webhook:x", OutboxStatus.pending, 30),
    ]
    async with unit_of_work(db.sessionmaker) as session:
        session.add_all(
            OutboxMessage(
                audit_sequence=n,
                kind="campaign.paused",
                destination=destination,
                status=status,
                next_attempt_at=now + timedelta(seconds=seconds),
            )
            for n, (destination, status, seconds) in enumerate(rows, start=1)
        )
    assert not await due(now)  # finished, or pending but not due yet
    assert not await due(now + timedelta(seconds=29))
    assert await due(now + timedelta(seconds=30))
