"""The campaign form in a real Chromium against a real `wavecast api` and a real worker.

Each test writes screenshots of the pages it visits to `test-artifacts/screenshots/`.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.auth.models import Scope
from app.runtime import Runtime
from tests.conftest import KeyMaker
from tests.support import add_devices, worker_processes, workers_alive
from tests.ui.browser import no_horizontal_scroll, shot, sign_in

pytestmark = pytest.mark.slow

OPERATOR = (Scope.campaigns_read, Scope.campaigns_write, Scope.campaigns_operate, Scope.kill)


async def test_sign_in(browser_page: Any, make_key: KeyMaker) -> None:
    from playwright.async_api import expect

    page = browser_page
    await page.goto("/ui/sign-in")
    await shot(page, "01-sign-in")
    await page.fill("#key", "wck_wrong_key")
    await page.click("button[type=submit]")
    await expect(page.locator("#sign-in-error")).to_contain_text("unknown or revoked")
    await sign_in(page, await make_key(*OPERATOR, name="ops"))
    await expect(page.locator(".actor")).to_contain_text("(ops)")
    await expect(page.locator("h1")).to_have_text("Campaigns")
    await no_horizontal_scroll(page)
    await shot(page, "02-campaigns-empty")


async def test_the_guard_warns_about_test_content_before_submit(
    browser_page: Any, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 30)
    page = browser_page
    await sign_in(page, await make_key(*OPERATOR))
    await page.click("text=New campaign")
    await page.wait_for_url(re.compile(r"/ui/campaigns/new$"))
    await page.fill("#name", "Keyboard check")
    await page.fill("#body", "Log in to see your statement.")
    await page.locator("#rules input[name=rule_field]").first.fill("locale")
    await page.locator("#rules select[name=rule_op]").first.select_option("starts_with")
    await page.locator("#rules input[name=rule_value]").first.fill("pl")
    await expect(page.locator("#audience-size")).to_contain_text("20 devices")
    await page.fill("#title", "ęśąćż")
    verdict = page.locator("#guard-verdict")
    await expect(verdict).to_contain_text("Warning: the guard flags this campaign")
    await expect(verdict).to_contain_text("marked beside the fields")
    beside_title = page.locator('[data-guard-for="title"]')
    await expect(beside_title).to_be_visible()
    await expect(beside_title).to_contain_text("ęśąćż")
    await expect(beside_title).to_contain_text("looks like a keyboard test")
    # The finding has one home: beside the title, not repeated in the verdict.
    await expect(verdict).not_to_contain_text("looks like a keyboard test")
    # The notification previews follow what is typed; nothing was submitted.
    await expect(page.locator(".ios [data-preview=title]")).to_have_text("ęśąćż")
    await expect(page.locator("#payload-bytes")).to_contain_text("bytes")
    assert page.url.endswith("/ui/campaigns/new")
    await no_horizontal_scroll(page)
    await shot(page, "03-new-campaign-guard-warning")
    # Fixing the title clears the warning.
    await page.fill("#title", "Your statement is ready")
    await expect(verdict).to_contain_text("no objection")
    await expect(beside_title).to_be_hidden()


async def test_create_watch_waves_and_kill_with_a_reason(
    browser_page: Any, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 300)  # 200 of them have a Polish locale
    page = browser_page
    with worker_processes(db.settings):
        await workers_alive(db, 1)
        await sign_in(page, await make_key(*OPERATOR))
        await page.goto("/ui/campaigns/new")
        await page.fill("#name", "November statement")
        await page.fill("#title", "Your statement is ready")
        await page.fill("#body", "Log in to see your November statement.")
        await page.locator("#rules input[name=rule_field]").first.fill("locale")
        await page.locator("#rules select[name=rule_op]").first.select_option("starts_with")
        await page.locator("#rules input[name=rule_value]").first.fill("pl")
        await page.click("text=Add rule")
        await page.locator("#rules input[name=rule_field]").nth(1).fill("platform")
        await page.locator("#rules select[name=rule_op]").nth(1).select_option("eq")
        await page.locator("#rules input[name=rule_value]").nth(1).fill("android")
        await page.select_option("#preset", "10-50-100")
        for row, hold in enumerate(("3", "3")):
            await page.locator("#waves input[name=wave_hold]").nth(row).fill(hold)
        await page.fill("#throttle", "10")
        await expect(page.locator("#audience-size")).to_contain_text("200 devices")
        await expect(page.locator("#waves [data-wave-devices]").first).to_contain_text("20 new")
        await shot(page, "04-new-campaign-filled")
        # Submitted from the keyboard (a full-page capture can leave mouse coordinates stale).
        await page.locator("#campaign-form button[type=submit]").press("Enter")
        await page.wait_for_url(re.compile(r"/ui/campaigns/[0-9a-f-]{36}$"))
        await expect(page.locator("#campaign-status")).to_have_text("draft")

        start = page.locator("#action-start")
        await start.locator("input[name=confirm]").check()
        await start.locator("button").click()
        await page.wait_for_url(re.compile(r"/ui/campaigns/[0-9a-f-]{36}$"))
        # From here on the page must not reload: a marker on the window would not survive.
        await page.evaluate("window.__sameDocument = true")
        wave = page.locator("#current-wave")
        await expect(wave).to_have_text(re.compile(r"^[12]$"), timeout=60_000)
        first = int(await wave.text_content() or "0")
        await shot(page, "05-campaign-running")
        await expect(wave).to_have_text(str(first + 1), timeout=60_000)
        # A running campaign is offered pause, not start.
        await expect(page.locator("#action-start")).to_be_hidden()
        await expect(page.locator("#action-pause")).to_be_visible()
        await expect(page.locator("#send-rate")).to_have_text(re.compile(r"/ s$"))
        assert await page.evaluate("window.__sameDocument === true")
        await expect(page.locator("#campaign-status")).to_have_text("running")

        kill = page.locator("#action-kill")
        await kill.locator("input[name=reason]").fill("wrong audience")
        await kill.locator("input[name=confirm]").check()
        await kill.locator("button").click()
        await expect(page.locator("#campaign-status")).to_have_text("killed")
        audit = page.locator("#campaign-audit")
        kill_row = audit.locator("tr", has_text="campaign.kill")
        await expect(kill_row).to_contain_text("wrong audience")
        await expect(kill_row).to_contain_text("key:")
        # A killed campaign offers no more actions.
        await expect(page.locator("#action-kill")).to_be_hidden()
        await expect(page.locator("#no-actions")).to_contain_text("killed")
        await no_horizontal_scroll(page)
        await shot(page, "06-campaign-killed")

    await page.goto("/ui/campaigns")
    row = page.locator("#campaigns tbody tr", has_text="November statement")
    await expect(row).to_contain_text("killed")
    await shot(page, "07-campaigns-list")
    await page.goto("/ui/audit?action=campaign.kill")
    await expect(page.locator("#audit")).to_contain_text("wrong audience")
    await shot(page, "08-audit-log")


async def test_engage_and_release_the_global_kill_switch(
    browser_page: Any, make_key: KeyMaker
) -> None:
    from playwright.async_api import expect

    page = browser_page
    await sign_in(page, await make_key(Scope.admin, name="head of ops"))
    banner = page.locator("#kill-switch-banner")
    await expect(banner).to_have_count(0)
    await page.click("nav >> text=Kill switch")
    engage = page.locator("#engage-form")
    await engage.locator("input[name=reason]").fill("app is down")
    await engage.locator("button").click()
    # Unconfirmed: nothing changes, the browser asks for the box first.
    await expect(page.locator("#switch-state")).to_contain_text("released")
    await engage.locator("input[name=confirm]").check()
    await engage.locator("button").click()
    await expect(page.locator("#switch-state")).to_contain_text("ENGAGED")
    await expect(banner).to_contain_text("app is down")
    await shot(page, "09-kill-switch-engaged")
    for path in ("/ui/campaigns", "/ui/campaigns/new", "/ui/audit", "/ui/devices", "/ui/segments"):
        await page.goto(path)
        await expect(banner).to_be_visible()
    await shot(page, "10-segments-with-banner")
    await page.goto("/ui/kill-switch")
    release = page.locator("#release-form")
    await release.locator("input[name=reason]").fill("incident closed")
    await release.locator("input[name=confirm]").check()
    await release.locator("button").click()
    await expect(page.locator("#switch-state")).to_contain_text("released")
    await expect(banner).to_have_count(0)
    await expect(page.locator("#switch-history")).to_contain_text("kill_switch.released")
    await shot(page, "11-kill-switch-released")


async def test_devices_page_on_a_narrow_screen(
    browser_page: Any, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 5, platform="ios")
    page = browser_page
    await sign_in(page, await make_key(Scope.admin))
    await page.goto("/ui/devices")
    rows = page.locator("#devices tbody tr")
    await expect(rows).to_have_count(5)
    first = rows.first
    await first.locator("input[name=reason]").fill("QA phone")
    await first.locator("button").click()
    await expect(page.locator("#devices tbody tr", has_text="Unmark")).to_have_count(1)
    await no_horizontal_scroll(page)
    await shot(page, "12-devices")
    await page.goto("/ui/audit?action=device.test_marked")
    await expect(page.locator("#audit")).to_contain_text("QA phone")
