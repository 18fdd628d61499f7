"""The timing fields of the new-campaign form and the campaign page's send schedule, in a
real Chromium: local time, quiet hours, deadline and priority go to the same CampaignCreate
the API takes; a refusal is said beside its field; the page says when each zone is sent."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.devices import service as devices_service
from app.devices.schemas import DeviceRegistration
from app.runtime import Runtime
from tests.conftest import KeyMaker
from tests.ui.browser import no_horizontal_scroll, shot, sign_in

pytestmark = pytest.mark.slow

WRITER = (Scope.campaigns_read, Scope.campaigns_write)
# Devices by time zone (None: none set, so the deployment's default, UTC).
ZONES: dict[str | None, int] = {"Asia/Kolkata": 2, "America/St_Johns": 1, None: 3}


async def add_zoned_devices(db: Runtime) -> None:
    now = utcnow()
    rows = []
    for zone, count in ZONES.items():
        for _ in range(count):
            reg = DeviceRegistration(
                token=f"android-{uuid.uuid4().hex}",
                platform="android",  # type: ignore[arg-type]
                timezone=zone,
            )
            rows.append(devices_service.registration_row(reg, now))
    async with unit_of_work(db.sessionmaker) as session:
        await devices_service.register_many(session, rows)


def next_wall(zone: ZoneInfo, clock: time, after: datetime) -> datetime:
    """The first instant at or after `after` at which the zone's wall clock reads `clock`."""
    day: date = after.astimezone(zone).date() - timedelta(days=1)
    while True:
        candidate = datetime.combine(day, clock, tzinfo=zone)
        if candidate >= after:
            return candidate.astimezone(UTC)
        day += timedelta(days=1)


async def fill_campaign(page: Any, name: str) -> None:
    await page.goto("/ui/campaigns/new")
    await page.fill("#name", name)
    await page.fill("#title", "Your statement is ready")
    await page.fill("#body", "Log in to see your November statement.")
    await page.check('input[name="audience_mode"][value="everyone"]')


async def campaigns(db: Runtime) -> list[Campaign]:
    async with db.sessionmaker() as session:
        return list((await session.exec(select(Campaign))).all())


async def test_a_campaign_with_a_local_time_and_its_own_quiet_hours_from_the_form(
    browser_page: Any, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_zoned_devices(db)
    page = browser_page
    await sign_in(page, await make_key(*WRITER))
    await fill_campaign(page, "Morning statement")
    await page.fill("#local_time", "09:30")
    window = page.locator(".quiet-window")
    await expect(window).to_be_hidden()  # the deployment's quiet hours need no window
    await page.check('input[name="quiet_mode"][value="custom"]')
    await expect(window).to_be_visible()
    await page.fill("#quiet_start", "22:00")
    await page.fill("#quiet_end", "07:00")
    expires = (utcnow() + timedelta(days=2)).replace(second=0, microsecond=0)
    await page.fill("#expires_at", f"{expires:%Y-%m-%dT%H:%M}")
    await expect(page.locator('label[for="expires_at"]')).to_contain_text("UTC")

    # The live preview says when each zone's devices would go.
    preview = page.locator("#schedule-preview")
    await expect(preview).to_be_visible()
    await expect(page.locator("#schedule-rules")).to_contain_text("09:30 on its own clock")
    await expect(page.locator("#schedule-rules")).to_contain_text("22:00-07:00")
    kolkata_row = preview.locator('tr[data-zone="Asia/Kolkata"]')
    await expect(kolkata_row.locator('[data-col="devices"]')).to_have_text("2")
    await expect(kolkata_row.locator('[data-col="local"]')).to_have_text("09:30")
    utc_row = preview.locator('tr[data-zone="UTC"]')
    await expect(utc_row.locator('[data-col="zone"]')).to_contain_text("3 without a zone")
    await expect(page.locator('[data-errors-for="quiet_hours"]')).to_be_hidden()
    await no_horizontal_scroll(page)
    await shot(page, "30-new-campaign-timing")

    await page.locator("#campaign-form button[type=submit]").press("Enter")
    await page.wait_for_url(re.compile(r"/ui/campaigns/[0-9a-f-]{36}$"))
    before = utcnow()
    (campaign,) = await campaigns(db)
    assert (campaign.local_time, campaign.quiet_hours) == ("09:30", "22:00-07:00")
    assert campaign.expires_at == expires.replace(tzinfo=UTC)
    assert campaign.priority == "normal"

    # The campaign page: its timing, and the schedule per zone.
    timing = page.locator("#campaign-timing")
    await expect(timing.locator('[data-timing="local-time"]')).to_contain_text("09:30")
    await expect(timing.locator('[data-timing="quiet-hours"]')).to_have_text(
        "22:00-07:00, device-local (the campaign's own)"
    )
    await expect(timing.locator('[data-timing="deadline"]')).to_have_text(
        f"{expires:%Y-%m-%d %H:%M:%S} UTC"
    )
    await expect(timing.locator('[data-timing="priority"]')).to_have_text("normal")
    schedule = page.locator("#send-schedule")
    await expect(schedule.locator("tbody tr")).to_have_count(3)
    for zone, devices in (("Asia/Kolkata", "2"), ("America/St_Johns", "1"), ("UTC", "3")):
        row = schedule.locator(f'tr[data-zone="{zone}"]')
        await expect(row.locator('[data-col="devices"]')).to_have_text(devices)
        await expect(row.locator('[data-col="local"]')).to_have_text("09:30")
        first = await row.locator('[data-col="first"]').text_content() or ""
        # Read on the page as loaded (just before `before`) or a moment later.
        expected = {
            f"{next_wall(ZoneInfo(zone), time(9, 30), at):%Y-%m-%d %H:%M:%S} UTC"
            for at in (before - timedelta(minutes=1), before + timedelta(minutes=1))
        }
        assert first.split(" UTC")[0] + " UTC" in expected, (zone, first, expected)
    await expect(schedule.locator('tr[data-zone="UTC"] [data-col="zone"]')).to_contain_text(
        "3 without a zone"
    )
    # Earliest first: the rows are in the order of their first send.
    firsts = await schedule.locator('[data-col="first"]').all_text_contents()
    assert firsts == sorted(firsts)
    await no_horizontal_scroll(page)
    await shot(page, "31-campaign-schedule")


async def test_quiet_hours_off_without_critical_is_refused_beside_the_field(
    browser_page: Any, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_zoned_devices(db)
    page = browser_page
    await sign_in(page, await make_key(*WRITER))
    await fill_campaign(page, "Night alert")
    await page.check('input[name="quiet_mode"][value="off"]')
    beside = page.locator('[data-errors-for="quiet_hours"]')
    # Said while typing, beside the choice, before anything is submitted.
    await expect(beside).to_be_visible()
    await expect(beside).to_contain_text('only with priority "critical"')
    await page.locator("#campaign-form button[type=submit]").press("Enter")
    await page.wait_for_load_state("load")
    assert page.url.endswith("/ui/campaigns/new")
    await expect(page.locator("#form-problems")).to_be_visible()
    await expect(beside).to_be_visible()
    await expect(beside).to_contain_text('only with priority "critical"')
    await expect(page.locator('input[name="quiet_mode"][value="off"]')).to_be_checked()
    await expect(page.locator('input[name="quiet_mode"][value="off"]')).to_have_attribute(
        "aria-invalid", "true"
    )
    assert await campaigns(db) == []
    await shot(page, "32-quiet-hours-off-refused")

    # Critical would allow it, but this key lacks the scope: said beside the priority.
    await page.select_option("#priority", "critical")
    priority = page.locator('[data-errors-for="priority"]')
    await expect(priority).to_contain_text("campaigns:critical")
    await expect(beside).to_be_hidden()
    await page.locator("#campaign-form button[type=submit]").press("Enter")
    await page.wait_for_load_state("load")
    assert page.url.endswith("/ui/campaigns/new")
    await expect(priority).to_contain_text("campaigns:critical")
    assert await campaigns(db) == []


async def test_a_critical_campaigns_page_says_it_keeps_no_quiet_hours(
    browser_page: Any, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_zoned_devices(db)
    page = browser_page
    await sign_in(page, await make_key(*WRITER, Scope.campaigns_critical))
    await fill_campaign(page, "Outage notice")
    await page.select_option("#priority", "critical")
    await page.check('input[name="quiet_mode"][value="off"]')
    await expect(page.locator("#schedule-rules")).to_contain_text("no quiet hours")
    await page.locator("#campaign-form button[type=submit]").press("Enter")
    await page.wait_for_url(re.compile(r"/ui/campaigns/[0-9a-f-]{36}$"))
    (campaign,) = await campaigns(db)
    assert (campaign.priority, campaign.quiet_hours, campaign.local_time) == (
        "critical",
        "off",
        None,
    )
    timing = page.locator("#campaign-timing")
    await expect(timing.locator('[data-timing="quiet-hours"]')).to_contain_text(
        "critical campaign is exempt"
    )
    await expect(timing.locator('[data-timing="local-time"]')).to_contain_text("as soon as")
    # Without a local time or quiet hours every zone goes at once.
    schedule = page.locator("#send-schedule")
    await expect(schedule.locator("tbody tr")).to_have_count(3)
    await expect(page.locator("#when")).to_contain_text("at once everywhere")
