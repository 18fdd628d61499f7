"""In a real Chromium: the campaigns list's progress is over the whole audience, a form the
guard refused names each finding once, a forbidden page keeps the header, and the
new-campaign page shows the deployment's guard policy."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from app.auth.models import Scope
from app.campaigns.models import CampaignKind
from app.campaigns.schemas import Content
from app.guard.policy import GuardInput, assess
from app.rollout.planner import WaveSpec
from app.runtime import Runtime
from app.settings import Environment
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, create_and_start
from tests.ui.browser import shot, sign_in
from tests.ui.support import api, send_first_wave

pytestmark = pytest.mark.slow

OPERATOR = (Scope.campaigns_read, Scope.campaigns_write, Scope.campaigns_operate, Scope.kill)


async def test_the_list_shows_progress_over_the_whole_audience(
    browser_page: Any, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 200)
    operator = bearer(await make_key(*OPERATOR))
    body = {
        "name": "One percent so far",
        "kind": "live",
        "content": {"title": "Your statement is ready", "body": "Log in to see it."},
        "audience": {"rules": {"everyone": True}},
        "rollout": {
            "waves": [
                {"percent": 1, "hold_seconds": 3600},  # wave 2 stays back for the test
                {"percent": 100},
            ]
        },
        "throttle": {"per_second": 1000},
    }
    async with api(db) as client:
        campaign_id = await create_and_start(client, operator, body)
    await send_first_wave(db, campaign_id)  # 1 % of 200: two devices, both sent

    page = browser_page
    await sign_in(page, await make_key(Scope.campaigns_read))
    row = page.locator("#campaigns tbody tr", has_text="One percent so far")
    reach = row.locator("td.reach")
    await expect(reach).to_have_attribute("data-done", "2")
    await expect(reach).to_have_attribute("data-audience", "200")
    await expect(reach.locator(".reach-percent")).to_have_text("1 %")
    progress = reach.locator("progress")
    await expect(progress).to_have_attribute("value", "2")
    await expect(progress).to_have_attribute("max", "200")
    await shot(page, "23-list-progress-over-the-audience")


async def test_a_refused_submit_shows_each_guard_finding_once(
    deployed_page: Callable[[str], Awaitable[Any]], make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 30)
    title, body = "ęśąćż", "Log in to see your statement."
    waves = [("10", "0"), ("50", "0"), ("100", "")]
    # What the guard finds, worked out apart from the page: the keyboard-mash title, a first
    # wave above the 5 % cap, and two holds below the 10 min floor.
    production = db.settings.model_copy(update={"env": Environment.production})
    expected = assess(
        production,
        GuardInput(
            kind=CampaignKind.live,
            text_fields=Content(title=title, body=body).text_fields(),
            waves=[WaveSpec(Decimal(p), int(h or 0)) for p, h in waves],
            non_test_devices=None,
            override_reason=None,
        ),
    )
    messages = [f.message for f in expected.findings]
    assert len(messages) == 4 and not expected.allowed, messages

    page = await deployed_page("production")
    await sign_in(page, await make_key(*OPERATOR))
    await page.goto("/ui/campaigns/new")
    await page.fill("#name", "Keyboard check")
    await page.fill("#title", title)
    await page.fill("#body", body)
    await page.locator("#rules input[name=rule_field]").first.fill("locale")
    await page.locator("#rules select[name=rule_op]").first.select_option("starts_with")
    await page.locator("#rules input[name=rule_value]").first.fill("pl")
    await page.select_option("#preset", "10-50-100")
    for row, (_percent, hold) in enumerate(waves[:2]):
        await page.locator("#waves input[name=wave_hold]").nth(row).fill(hold)
    async with page.expect_navigation():
        await page.locator("#campaign-form button[type=submit]").press("Enter")
    await expect(page.locator("#form-problems")).to_contain_text("not created")
    # The page's own live check has run on the refused form too (it fills the payload size).
    await expect(page.locator("#payload-bytes")).to_contain_text("bytes")
    await page.wait_for_load_state("networkidle")

    text = await page.evaluate("document.body.innerText")
    for message in messages:
        assert text.count(message) == 1, (message, text.count(message), text)
    await expect(page.locator("#form-problems")).to_contain_text("environment guard refused")
    # Each beside what it concerns: the title's by the title, the staging ones by their wave.
    await expect(page.locator('[data-guard-for="title"]')).to_contain_text("keyboard test")
    first_wave = page.locator("#waves > li").nth(0).locator("[data-guard-wave]")
    await expect(first_wave).to_contain_text("first wave may reach at most 5%")
    await expect(first_wave).to_contain_text("wave 1 holds 0 s")
    second_wave = page.locator("#waves > li").nth(1).locator("[data-guard-wave]")
    await expect(second_wave).to_contain_text("wave 2 holds 0 s")
    await expect(page.locator("#guard-verdict")).to_have_class(re.compile(r"\brefused\b"))
    await shot(page, "24-refused-findings-once")


async def test_a_forbidden_page_keeps_the_navigation_and_the_sign_out_button(
    browser_page: Any, make_key: KeyMaker
) -> None:
    from playwright.async_api import expect

    page = browser_page
    await sign_in(page, await make_key(Scope.kill, name="on-call"))
    for path in ("/ui/audit", "/ui/campaigns/new"):
        answer = await page.goto(path)
        assert answer is not None and answer.status == 403, path
        await expect(page.locator("h1")).to_have_text("Forbidden")
        await expect(page.locator(".problem")).to_contain_text("scope")
        nav = page.locator("header nav")
        await expect(nav.get_by_role("link", name="Campaigns")).to_be_visible()
        await expect(nav.get_by_role("link", name="Kill switch")).to_be_visible()
        await expect(page.locator(".actor")).to_contain_text("(on-call)")
        await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await shot(page, "25-forbidden-with-navigation")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(re.compile(r"/ui/sign-in"))
    answer = await page.goto("/ui/kill-switch")
    assert answer is not None and "/ui/sign-in" in page.url  # the session really ended


async def test_the_new_campaign_page_shows_the_deployments_guard_policy(
    browser_page: Any,
    deployed_page: Callable[[str], Awaitable[Any]],
    make_key: KeyMaker,
) -> None:
    from playwright.async_api import expect

    key = await make_key(*OPERATOR)
    pages = {
        "development": browser_page,
        "staging": await deployed_page("staging"),
        "production": await deployed_page("production"),
    }
    for environment, page in pages.items():
        await sign_in(page, key)
        await page.goto("/ui/campaigns/new")
        policy = page.locator("#guard #guard-policy")
        await expect(policy.locator('[data-policy="environment"]')).to_have_text(environment)
        provider = "sandbox" if environment == "development" else "real"
        await expect(policy.locator('[data-policy="provider"]')).to_have_text(provider)
        only_test = policy.locator('[data-policy="test-devices-only"]')
        staging = policy.locator('[data-policy="staging"]')
        lint = policy.locator('[data-policy="content-lint"]')
        await expect(staging).to_contain_text("at least 2 waves")
        await expect(staging).to_contain_text("first wave at most 5 %")
        await expect(staging).to_contain_text("at least 10 min")
        if environment == "production":
            await expect(only_test).to_have_count(0)
            await expect(staging).to_contain_text("enforced")
            await expect(lint).to_contain_text("blocks")
        else:
            # Staging with a real provider reaches test devices only; development's sandbox
            # reaches no phone at all.
            await expect(only_test).to_have_count(1 if environment == "staging" else 0)
            await expect(staging).to_contain_text("reported only")
            await expect(lint).to_contain_text("advises")
        await shot(page, f"26-policy-{environment}")
