"""Four-eyes after the start: one person may set an approved campaign's rate, opens budget and
failure threshold anywhere as strict as its approval covered, or stricter, never looser."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update

from app.approval.models import CampaignApproval
from app.auth.models import Scope
from app.campaigns.schemas import CampaignPatch
from app.campaigns.service import Limits, looser_limits
from app.control.plane import Control
from app.db.types import utcnow
from app.rollout import engine
from app.runtime import Runtime
from tests.approval.test_approval_api import _author_and_approver, api
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.support import add_devices, campaign_body

_UNSET = object()


def _patch(rate: int | None, budget: object, threshold: int | None) -> CampaignPatch:
    body: dict[str, Any] = {}
    if rate is not None:
        body["throttle"] = {"per_second": rate}
        if budget is not _UNSET:
            body["throttle"]["max_opens_per_second"] = budget
    if threshold is not None:
        body["failure_threshold_percent"] = threshold
    return CampaignPatch.model_validate(body)


@pytest.mark.parametrize("had_budget", [None, 50])
def test_only_loosened_limits_are_listed(had_budget: int | None) -> None:
    bound = Limits(100, had_budget, Decimal("2.5000"))
    for rate, budget, threshold in itertools.product(
        [None, 1, 99, 100, 101, 100_000],
        [_UNSET, None, 1, 49, 50, 51],
        [None, 0, 2, 3, 100],
    ):
        if rate is None and budget is not _UNSET:
            continue
        fields = [e["field"] for e in looser_limits(bound, _patch(rate, budget, threshold))]
        expected = []
        if rate is not None and rate > 100:
            expected.append("throttle.per_second")
        if (
            had_budget is not None
            and budget is not _UNSET
            and (budget is None or budget > had_budget)  # type: ignore[operator]
        ):
            expected.append("throttle.max_opens_per_second")
        if threshold is not None and threshold > 2.5:
            expected.append("failure_threshold_percent")
        assert fields == expected, (rate, budget, threshold)


def test_each_loosening_says_from_what_to_what() -> None:
    messages = [
        e["message"]
        for e in looser_limits(
            Limits(10, 5, Decimal("2.0000")),
            CampaignPatch.model_validate(
                {
                    "throttle": {"per_second": 100000, "max_opens_per_second": None},
                    "failure_threshold_percent": 100,
                }
            ),
        )
    ]
    assert messages == [
        "raises the rate to 100000/s, above 10/s",
        "removes the opens budget, which holds it to 5 opens/s",
        "raises the failure threshold to 100 %, above 2 %",
    ]


async def test_a_started_campaign_is_made_stricter_alone_never_looser(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    await add_devices(db, 20)
    author, approver = await _author_and_approver(make_person, make_key)
    start_at = utcnow() + timedelta(minutes=5)
    body = campaign_body(
        rollout={
            "start_at": start_at.isoformat(),
            "waves": [{"percent": 10, "hold_seconds": 600}, {"percent": 100}],
        },
        throttle={"per_second": 10, "max_opens_per_second": 5},
        failure_threshold_percent=2,
    )
    async with api(db, approval_required_above=0) as client:
        campaign_id = (await client.post("/v1/campaigns", json=body, headers=author)).json()["id"]
        url = f"/v1/campaigns/{campaign_id}"
        assert (await client.post(f"{url}/approve", headers=approver)).status_code == 200
        started = await client.post(f"{url}/start", headers=author)
        assert started.json()["status"] == "scheduled", started.text

        looser = await client.patch(
            url,
            json={
                "throttle": {"per_second": 100000, "max_opens_per_second": None},
                "failure_threshold_percent": 100,
            },
            headers=author,
        )
        assert looser.status_code == 409, looser.text
        problem = looser.json()
        assert problem["type"].endswith("/approval-required")
        assert [e["field"] for e in problem["errors"]] == [
            "throttle.per_second",
            "throttle.max_opens_per_second",
            "failure_threshold_percent",
        ]
        assert "raises the rate to 100000/s, above 10/s" in problem["detail"]
        assert "the approval Approver gave" in problem["detail"]
        assert "cancel this campaign" in problem["detail"]
        for one in (
            {"throttle": {"per_second": 11}},
            {"throttle": {"per_second": 10, "max_opens_per_second": 6}},
            {"failure_threshold_percent": 2.5},
        ):
            assert (await client.patch(url, json=one, headers=author)).status_code == 409, one
        unchanged = (await client.get(url, headers=author)).json()
        assert unchanged["throttle"]["per_second"] == 10
        assert unchanged["throttle"]["max_opens_per_second"] == 5
        assert Decimal(str(unchanged["failure_threshold_percent"])) == 2
        approval = (await client.get(f"{url}/approval", headers=author)).json()
        assert approval["approval"]["person_name"] == "Approver", "a refused edit voids nothing"

        stricter = await client.patch(
            url,
            json={"throttle": {"per_second": 5, "max_opens_per_second": 3}},
            headers=author,
        )
        assert stricter.status_code == 200, stricter.text
        lower = await client.patch(url, json={"failure_threshold_percent": 1}, headers=author)
        assert lower.status_code == 200, lower.text

    control = Control(db.redis)
    try:
        report = await engine.tick(
            db.sessionmaker,
            control,
            db.settings.model_copy(update={"approval_required_above": 0}),
            now=start_at + timedelta(minutes=1),
        )
    finally:
        await control.watch.aclose()
    assert uuid.UUID(campaign_id) in report.started
    async with api(db, approval_required_above=0) as client:
        running = (await client.get(url, headers=author)).json()
        assert running["status"] == "running"
        assert (running["throttle"]["per_second"], running["throttle"]["max_opens_per_second"]) == (
            5,
            3,
        )
        # Paused, it is held to the same rule: resuming alone cannot bring looser limits.
        paused = await client.post(f"{url}/pause", json={"reason": "check"}, headers=author)
        assert paused.status_code == 200, paused.text
        for looser in (
            {"throttle": {"per_second": 11}},
            {"throttle": {"per_second": 10, "max_opens_per_second": 6}},
            {"failure_threshold_percent": "2.0001"},
        ):
            answer = await client.patch(url, json=looser, headers=author)
            assert answer.status_code == 409, (looser, answer.text)
        # Back up to what was approved, alone: the approval's own limits, not the slower ones
        # set since, are the bound.
        for restored in (
            {"throttle": {"per_second": 10, "max_opens_per_second": 5}},
            {"failure_threshold_percent": 2},
        ):
            answer = await client.patch(url, json=restored, headers=author)
            assert answer.status_code == 200, (restored, answer.text)

    # The bound is the approval given, not whether one would be needed today (the audience
    # shrinks as tokens die; settings change).
    async with api(db, approval_required_above=1_000_000) as client:
        unneeded = await client.patch(url, json={"throttle": {"per_second": 11}}, headers=author)
        assert unneeded.status_code == 409, unneeded.text


def _scheduled(**overrides: Any) -> dict[str, Any]:
    """A campaign starting in five minutes, its first wave held: started, it stays scheduled."""
    return campaign_body(
        rollout={
            "start_at": (utcnow() + timedelta(minutes=5)).isoformat(),
            "waves": [{"percent": 10, "hold_seconds": 600}, {"percent": 100}],
        },
        **overrides,
    )


async def test_an_approval_from_before_the_limits_were_kept_bounds_them_where_they_are(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    await add_devices(db, 5)
    author, approver = await _author_and_approver(make_person, make_key)
    body = _scheduled(throttle={"per_second": 10})
    async with api(db, approval_required_above=0) as client:
        campaign_id = (await client.post("/v1/campaigns", json=body, headers=author)).json()["id"]
        url = f"/v1/campaigns/{campaign_id}"
        assert (await client.post(f"{url}/approve", headers=approver)).status_code == 200
        assert (await client.post(f"{url}/start", headers=author)).status_code == 200
        async with db.sessionmaker() as session:
            await session.execute(
                update(CampaignApproval)
                .where(CampaignApproval.campaign_id == uuid.UUID(campaign_id))  # type: ignore[arg-type]
                .values(
                    throttle_per_second=None,
                    max_opens_per_second=None,
                    failure_threshold_percent=None,
                )
            )
            await session.commit()
        slower = await client.patch(url, json={"throttle": {"per_second": 8}}, headers=author)
        assert slower.status_code == 200, slower.text
        back = await client.patch(url, json={"throttle": {"per_second": 10}}, headers=author)
        assert back.status_code == 409, back.text


async def test_without_a_needed_approval_a_started_campaign_may_be_loosened(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    await add_devices(db, 5)
    author = bearer(await make_key(Scope.admin, person=await make_person("Author")))
    body = _scheduled(throttle={"per_second": 10})
    async with api(db, approval_required_above=10) as client:
        campaign_id = (await client.post("/v1/campaigns", json=body, headers=author)).json()["id"]
        url = f"/v1/campaigns/{campaign_id}"
        assert (await client.post(f"{url}/start", headers=author)).status_code == 200
        faster = await client.patch(url, json={"throttle": {"per_second": 50}}, headers=author)
        assert faster.status_code == 200, faster.text
