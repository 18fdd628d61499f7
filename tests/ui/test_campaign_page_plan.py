"""The campaign page before Start, in a real Chromium: what it sends and to whom, each wave's
size, the guard's verdict here, an override with who gave it, the deployment's policy; and,
after a stop, the waves that will never send say so."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from app.auth.models import Scope
from app.rollout.planner import cumulative_target
from app.runtime import Runtime
from app.settings import Environment
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, create_and_start
from tests.ui.browser import shot, sign_in
from tests.ui.support import api, send_first_wave

pytestmark = pytest.mark.slow

WRITER = (Scope.campaigns_read, Scope.campaigns_write)
OPERATOR = (*WRITER, Scope.campaigns_operate, Scope.kill)


CONTENT = {
    "title": "Your statement is ready",
    "body": "Log in to see your November statement.",
    "deep_link": "bank://statements/november",
    "data": {"campaign": "statements"},
    "ios": {"title": "Statement ready", "subtitle": "November", "badge": 1},
    "android": {"body": "Tap to open your November statement.", "channel_id": "statements"},
    "locales": {"pl": {"title": "Wyciąg jest gotowy", "body": "Zaloguj się, aby go zobaczyć."}},
}


async def test_the_campaign_page_shows_what_start_sends_and_to_whom(
    browser_page: Any, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 30)  # 20 of them pl-PL
    await add_devices(db, 9, platform="ios")  # 6 of them pl-PL
    writer = bearer(await make_key(*WRITER, name="marketing"))
    rules = {"all": [{"field": "locale", "op": "starts_with", "value": "pl"}]}
    async with api(db) as client:
        segment = await client.post(
            "/v1/segments", json={"name": "Polish customers", "rules": rules}, headers=writer
        )
        assert segment.status_code == 201, segment.text
        percents = ["1", "10", "100"]
        created = await client.post(
            "/v1/campaigns",
            json={
                "name": "November statement",
                "kind": "live",
                "content": CONTENT,
                "audience": {"segment_id": segment.json()["id"]},
                "rollout": {
                    "waves": [
                        {"percent": percents[0], "hold_seconds": 600},
                        {"percent": percents[1], "hold_seconds": 3600},
                        {"percent": percents[2]},
                    ]
                },
            },
            headers=writer,
        )
        assert created.status_code == 201, created.text
    page = browser_page
    await sign_in(page, await make_key(Scope.campaigns_read, name="reader"))
    await page.goto(f"/ui/campaigns/{created.json()['id']}")
    await expect(page.locator("#campaign-status")).to_have_text("draft")

    # The text per locale and platform, resolved as the payloads are.
    default = page.locator('#content-texts tr[data-locale=""]')
    await expect(default.locator('[data-platform="ios"] .t-title')).to_have_text("Statement ready")
    await expect(default.locator('[data-platform="ios"] .t-body')).to_have_text(CONTENT["body"])
    android = default.locator('[data-platform="android"]')
    await expect(android.locator(".t-title")).to_have_text("Your statement is ready")
    await expect(android.locator(".t-body")).to_have_text("Tap to open your November statement.")
    polish = page.locator('#content-texts tr[data-locale="pl"]')
    for platform in ("ios", "android"):
        cell = polish.locator(f'[data-platform="{platform}"]')
        await expect(cell.locator(".t-title")).to_have_text("Wyciąg jest gotowy")
        await expect(cell.locator(".t-body")).to_have_text("Zaloguj się, aby go zobaczyć.")
    await expect(page.locator('#options-ios [data-option="subtitle"]')).to_have_text("November")
    await expect(page.locator('#options-ios [data-option="badge"]')).to_have_text("1")
    await expect(page.locator('#options-android [data-option="channel_id"]')).to_have_text(
        "statements"
    )
    await expect(page.locator("#deep-link")).to_have_text("bank://statements/november")

    # To whom: the segment, its rules, the audience's size now, and each wave's size.
    await expect(page.locator("#audience-segment")).to_contain_text("Polish customers")
    await expect(page.locator("#audience-rules")).to_have_text('all of (locale starts_with "pl")')
    audience = 26
    await expect(page.locator("#audience-now")).to_contain_text(f"{audience} devices")
    await expect(page.locator("#audience-now")).to_contain_text("iOS 6, Android 20")
    previous = 0
    for index, percent in enumerate(percents):
        row = page.locator(f'#wave-plan tr[data-wave="{index}"]')
        cumulative = cumulative_target(Decimal(percent), audience)
        await expect(row.locator('[data-plan="cumulative"]')).to_have_text(str(cumulative))
        await expect(row.locator('[data-plan="new"]')).to_have_text(str(cumulative - previous))
        previous = cumulative
    # 1 % of 26 is one device, 10 % three: ceilings, never a rounding down to nobody.
    second = page.locator('#wave-plan tr[data-wave="1"] [data-plan="cumulative"]')
    await expect(second).to_have_text("3")

    # The guard's verdict in this environment, and this deployment's policy.
    verdict = page.locator("#guard-verdict")
    await expect(verdict).to_contain_text("Allowed in development")
    await expect(verdict).to_have_attribute("data-allowed", "true")
    await expect(page.locator("#guard-override")).to_have_count(0)
    policy = page.locator("#guard-policy")
    await expect(policy.locator('[data-policy="environment"]')).to_have_text("development")
    await expect(policy.locator('[data-policy="provider"]')).to_have_text("sandbox")
    await expect(policy.locator('[data-policy="staging"]')).to_contain_text("at least 2 waves")
    await expect(policy.locator('[data-policy="staging"]')).to_contain_text("reported only")
    await expect(policy.locator('[data-policy="content-lint"]')).to_contain_text("advises")
    await expect(policy.locator('[data-policy="test-devices-only"]')).to_have_count(0)
    await shot(page, "20-campaign-before-start")


async def test_the_campaign_page_names_the_override_and_who_gave_it_in_production(
    deployed_page: Callable[[str], Awaitable[Any]], make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 30)
    operator = bearer(await make_key(*OPERATOR, name="ana from compliance"))
    reason = "Approved: the launch message is deliberately written in Polish diacritics"
    async with api(db, Environment.production) as client:
        created = await client.post(
            "/v1/campaigns",
            json={
                "name": "Diacritics launch",
                "kind": "live",
                "content": {"title": "ęśąćż", "body": "Log in to see what is new."},
                "audience": {"rules": {"everyone": True}},
                "rollout": {
                    "waves": [{"percent": 1, "hold_seconds": 600}, {"percent": 100}],
                },
                "override": {"reason": reason},
            },
            headers=operator,
        )
        assert created.status_code == 201, created.text
    page = await deployed_page("production")
    await sign_in(page, await make_key(Scope.campaigns_read, name="ben"))
    await page.goto(f"/ui/campaigns/{created.json()['id']}")

    verdict = page.locator("#guard-verdict")
    await expect(verdict).to_contain_text("Allowed in production")
    await expect(verdict).to_contain_text("override")
    await expect(verdict).to_contain_text("looks like a keyboard test")
    override = page.locator("#guard-override")
    await expect(override.locator('[data-override="reason"]')).to_have_text(reason)
    # The person who gave it (from the audit log), not the person reading the page.
    given_by = override.locator('[data-override="by"]')
    await expect(given_by).to_contain_text("ana from compliance")
    await expect(given_by).to_contain_text(re.compile(r"at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))
    await expect(given_by).not_to_contain_text("ben")

    policy = page.locator("#guard-policy")
    await expect(policy.locator('[data-policy="environment"]')).to_have_text("production")
    await expect(policy.locator('[data-policy="provider"]')).to_have_text("real")
    staging = policy.locator('[data-policy="staging"]')
    await expect(staging).to_contain_text("first wave at most 5 %")
    await expect(staging).to_contain_text("at least 10 min")
    await expect(staging).to_contain_text("enforced")
    await expect(policy.locator('[data-policy="content-lint"]')).to_contain_text("blocks")
    await shot(page, "21-campaign-overridden-production")


async def test_waves_that_were_never_released_read_not_sent_after_a_kill_or_a_cancel(
    browser_page: Any, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 200)
    operator = bearer(await make_key(*OPERATOR))
    waves = [
        {"percent": 1, "hold_seconds": 3600},  # the hold keeps wave 2 back for the test
        {"percent": 50, "hold_seconds": 3600},
        {"percent": 100},
    ]
    async with api(db) as client:
        killed = await create_and_start(
            client, operator, campaign_body_with(name="Killed after wave 1", waves=waves)
        )
        cancelled = await create_and_start(
            client, operator, campaign_body_with(name="Cancelled before wave 1", waves=waves)
        )
        answer = await client.post(
            f"/v1/campaigns/{cancelled}/cancel", json={"reason": "wrong day"}, headers=operator
        )
        assert answer.status_code == 200, answer.text
    await send_first_wave(db, killed)

    page = browser_page
    await sign_in(page, await make_key(*OPERATOR))
    await page.goto(f"/ui/campaigns/{killed}")
    timeline = page.locator("#waves-timeline")
    await expect(timeline.locator('[data-wave="1"] .wave-status')).to_have_text("pending")
    kill = page.locator("#action-kill")
    await kill.locator("input[name=reason]").fill("wrong audience")
    await kill.locator("input[name=confirm]").check()
    await kill.locator("button").click()
    await expect(page.locator("#campaign-status")).to_have_text("killed")
    await expect(timeline.locator('[data-wave="0"] .wave-status')).to_have_text("finished")
    for index in (1, 2):
        await expect(timeline.locator(f'[data-wave="{index}"] .wave-status')).to_have_text(
            "not sent"
        )
    await expect(timeline).not_to_contain_text("pending")
    await shot(page, "22-killed-waves-not-sent")

    await page.goto(f"/ui/campaigns/{cancelled}")
    await expect(page.locator("#campaign-status")).to_have_text("cancelled")
    statuses = page.locator("#waves-timeline .wave-status")
    await expect(statuses).to_have_text(["not sent", "not sent", "not sent"])


def campaign_body_with(*, name: str, waves: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "live",
        "content": {"title": "Your statement is ready", "body": "Log in to see it."},
        "audience": {"rules": {"everyone": True}},
        "rollout": {"waves": waves},
        "throttle": {"per_second": 1000},
    }
