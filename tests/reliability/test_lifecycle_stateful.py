"""The campaign lifecycle as a hypothesis state machine, against the real database and Redis.

Operators create, start, pause, resume, cancel and kill campaigns and flip the global kill
switch through the HTTP API; between their calls the worker ticks (the engine's tick and a
send job, in this process, with the sandbox provider). After every step:

- a killed or cancelled campaign has sent nothing since it was stopped;
- no device received a campaign twice;
- wave k of a campaign holds at most ⌈p_k·N⌉ devices cumulatively (N counted at release);
- the audit log holds every transition: per campaign, the recorded transitions chain from
  `draft` to the status the database holds now.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.auth import service as auth_service
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.campaigns.models import Campaign, CampaignWave
from app.db.session import unit_of_work
from app.delivery.models import Delivery, SandboxMessage
from app.delivery.sender import pump
from app.main import create_app
from app.rollout import engine
from app.runtime import Runtime
from app.settings import Settings
from tests.conftest import truncate_all
from tests.support import add_devices, campaign_body, sender_deps

pytestmark = pytest.mark.reliability

DEVICES = 40
T = TypeVar("T")


class Lifecycle(RuleBasedStateMachine):
    """One example: a clean database, a few devices, any sequence of operator calls."""

    # Set by the test before the machine runs: a loop of its own and the suite's settings.
    loop: asyncio.AbstractEventLoop
    suite_settings: Settings

    campaigns = Bundle("campaigns")

    def __init__(self) -> None:
        super().__init__()
        self.runtime = self.run(Runtime.start(self.suite_settings))
        self.run(truncate_all(self.runtime))
        self.run(self.runtime.redis.flushdb())
        self.run(add_devices(self.runtime, DEVICES))
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(
                app=create_app(self.suite_settings, runtime=self.runtime)
            ),
            base_url="http://wavecast.test",
        )
        self.headers = {"Authorization": f"Bearer {self.run(self._key())}"}
        self.deps = self.run(sender_deps(self.runtime))
        # Messages recorded for a campaign when it was killed or cancelled.
        self.stopped_at: dict[uuid.UUID, int] = {}
        self.switch_engaged = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def _key(self) -> str:
        async with unit_of_work(self.runtime.sessionmaker) as session:
            created = await auth_service.create_key(
                session, self.runtime.settings, SYSTEM, name="operator", scopes=[Scope.admin]
            )
        return created.raw

    def teardown(self) -> None:
        self.run(self.client.aclose())
        self.run(self.runtime.close())

    def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        answer = self.run(self.client.post(path, json=body, headers=self.headers))
        assert answer.status_code < 500, answer.text
        return answer

    # --- operator calls ---------------------------------------------------------------

    @rule(
        target=campaigns,
        percents=st.lists(st.integers(1, 99), min_size=0, max_size=3, unique=True).map(sorted),
        rate=st.sampled_from([5, 20, 1000]),
    )
    def create(self, percents: list[int], rate: int) -> uuid.UUID:
        waves = [{"percent": p, "hold_seconds": 0} for p in percents] + [{"percent": 100}]
        answer = self.post(
            "/v1/campaigns",
            campaign_body(rollout={"waves": waves}, throttle={"per_second": rate}),
        )
        assert answer.status_code == 201, answer.text
        return uuid.UUID(answer.json()["id"])

    @rule(campaign=campaigns)
    def start(self, campaign: uuid.UUID) -> None:
        answer = self.post(f"/v1/campaigns/{campaign}/start")
        assert answer.status_code in (200, 409), answer.text

    @rule(campaign=campaigns)
    def pause(self, campaign: uuid.UUID) -> None:
        answer = self.post(f"/v1/campaigns/{campaign}/pause", {"reason": "looking"})
        assert answer.status_code in (200, 409), answer.text

    @rule(campaign=campaigns)
    def resume(self, campaign: uuid.UUID) -> None:
        answer = self.post(f"/v1/campaigns/{campaign}/resume")
        assert answer.status_code in (200, 409), answer.text
        if self.switch_engaged:
            assert answer.status_code == 409, "nothing resumes while the switch is engaged"

    @rule(campaign=campaigns)
    def cancel(self, campaign: uuid.UUID) -> None:
        answer = self.post(f"/v1/campaigns/{campaign}/cancel", {"reason": "not needed"})
        assert answer.status_code in (200, 409), answer.text
        if answer.status_code == 200:
            self.stopped_at.setdefault(campaign, self.run(self._sent(campaign)))

    @rule(campaign=campaigns)
    def kill(self, campaign: uuid.UUID) -> None:
        answer = self.post(f"/v1/campaigns/{campaign}/kill", {"reason": "wrong audience"})
        assert answer.status_code in (200, 409), answer.text
        if answer.status_code == 200:
            self.stopped_at.setdefault(campaign, self.run(self._sent(campaign)))

    @rule()
    def switch_on(self) -> None:
        answer = self.post("/v1/kill-switch", {"reason": "incident"})
        assert answer.status_code == 200, answer.text
        self.switch_engaged = True

    @rule()
    def switch_off(self) -> None:
        answer = self.post("/v1/kill-switch/release", {"reason": "incident over"})
        assert answer.status_code == (200 if self.switch_engaged else 409), answer.text
        self.switch_engaged = False

    @rule(ticks=st.integers(1, 3))
    def worker_ticks(self, ticks: int) -> None:
        for _ in range(ticks):
            self.run(self._tick())

    async def _tick(self) -> None:
        report = await engine.tick(
            self.runtime.sessionmaker, self.deps.control, self.runtime.settings
        )
        for campaign_id in report.sendable:
            await pump(self.deps, campaign_id, budget_seconds=0.3)

    # --- invariants -------------------------------------------------------------------

    async def _sent(self, campaign: uuid.UUID) -> int:
        async with self.runtime.sessionmaker() as session:
            return int(
                (
                    await session.execute(
                        select(func.count())
                        .select_from(SandboxMessage)
                        .where(SandboxMessage.campaign_id == campaign)  # type: ignore[arg-type]
                    )
                ).scalar_one()
            )

    @invariant()
    def stopped_campaigns_never_send_again(self) -> None:
        for campaign, at_stop in self.stopped_at.items():
            assert self.run(self._sent(campaign)) == at_stop, f"{campaign} sent after its stop"

    @invariant()
    def no_device_twice(self) -> None:
        async def worst() -> int:
            async with self.runtime.sessionmaker() as session:
                counts = (
                    await session.execute(
                        select(func.count())
                        .select_from(SandboxMessage)
                        .group_by(
                            SandboxMessage.campaign_id,  # type: ignore[arg-type]
                            SandboxMessage.device_id,  # type: ignore[arg-type]
                        )
                    )
                ).scalars()
                return max(counts, default=0)

        assert self.run(worst()) <= 1

    @invariant()
    def waves_never_exceed_their_share(self) -> None:
        async def check() -> None:
            async with self.runtime.sessionmaker() as session:
                waves = (await session.execute(select(CampaignWave))).scalars().all()
                per_wave = Counter(
                    (c, w)
                    for c, w in (
                        await session.execute(select(Delivery.campaign_id, Delivery.wave))  # type: ignore[call-overload]
                    ).all()
                )
            for wave in waves:
                cumulative = sum(
                    n for (c, w), n in per_wave.items() if c == wave.campaign_id and w <= wave.index
                )
                if wave.audience_size is None:
                    assert cumulative == sum(
                        n
                        for (c, w), n in per_wave.items()
                        if c == wave.campaign_id and w < wave.index
                    ), "rows in a wave that was never released"
                    continue
                cap = math.ceil(Decimal(wave.percent) * wave.audience_size / 100)
                assert cumulative <= cap, (wave.campaign_id, wave.index, cumulative, cap)

        self.run(check())

    @invariant()
    def every_transition_is_audited(self) -> None:
        async def check() -> None:
            async with self.runtime.sessionmaker() as session:
                statuses = dict(
                    (await session.execute(select(Campaign.id, Campaign.status))).all()  # type: ignore[call-overload]
                )
                events = (
                    (
                        await session.execute(
                            select(AuditEvent)
                            .where(AuditEvent.subject_type == "campaign")  # type: ignore[arg-type]
                            .order_by(AuditEvent.id)  # type: ignore[arg-type]
                        )
                    )
                    .scalars()
                    .all()
                )
            chain = dict.fromkeys(statuses, "draft")
            for event in events:
                if not (event.before and "status" in event.before and event.after):
                    continue
                campaign = uuid.UUID(event.subject_id or "")
                assert event.before["status"] == chain[campaign], (event.action, chain[campaign])
                chain[campaign] = event.after["status"]
            for campaign, status in statuses.items():
                assert chain[campaign] == status, (
                    f"{campaign}: audit says {chain[campaign]}, is {status}"
                )

        self.run(check())


def test_campaign_lifecycle_state_machine(settings: Settings) -> None:
    loop = asyncio.new_event_loop()
    Lifecycle.loop = loop
    Lifecycle.suite_settings = settings
    try:
        run_state_machine_as_test(
            Lifecycle,
            settings=hypothesis_settings(
                max_examples=12,
                stateful_step_count=25,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        loop.close()
