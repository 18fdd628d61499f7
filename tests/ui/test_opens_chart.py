"""The campaign page's opens-per-second chart: its layout (pure) and the SVG in Chromium,
under the production CSP (no inline script or style), refreshed with the live part."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.auth.models import Scope
from app.db.types import utcnow
from app.events.schemas import OpensPoint
from app.runtime import Runtime
from app.ui.opens_chart import opens_chart
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, deliveries, run_engine
from tests.ui.browser import no_horizontal_scroll, shot, sign_in

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def test_each_second_with_opens_is_one_bar_scaled_to_the_busiest() -> None:
    points = [
        OpensPoint(second=T0 + timedelta(seconds=5), opens=4),
        OpensPoint(second=T0 + timedelta(seconds=6), opens=1),
        OpensPoint(second=T0 + timedelta(seconds=9), opens=2),
        OpensPoint(second=T0 + timedelta(seconds=700), opens=9),  # outside the window
    ]
    chart = opens_chart(T0, T0 + timedelta(minutes=10), points, height=100)
    assert (chart.width, chart.height, chart.peak, chart.total) == (600, 100, 4, 7)
    assert [(b.x, b.y, b.height, b.opens) for b in chart.bars] == [
        (5, 0.0, 100.0, 4),
        (6, 75.0, 25.0, 1),
        (9, 50.0, 50.0, 2),
    ]
    empty = opens_chart(T0, T0 + timedelta(minutes=10), [])
    assert (empty.bars, empty.peak, empty.total) == ([], 0, 0)


async def test_the_chart_renders_in_chromium(
    browser_page: Any, client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 6)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await run_engine(db, campaign_id)
    refs = sorted(r.id for r in await deliveries(db, campaign_id) if r.id is not None)
    base = utcnow().replace(microsecond=0) - timedelta(seconds=90)
    # Three opens in one second, one in another: two bars, the first three times as tall.
    seconds = [0, 0, 0, 30]
    events = [
        {
            "ref": ref,
            "type": "opened",
            "at": (base + timedelta(seconds=s, milliseconds=100 * i)).isoformat(),
        }
        for i, (ref, s) in enumerate(zip(refs, seconds, strict=False))
    ]
    writer = bearer(await make_key(Scope.events_write))
    answer = await client.post("/v1/events", json=events, headers=writer)
    assert answer.json()["accepted"] == 4

    page = browser_page
    await sign_in(page, await make_key(Scope.campaigns_read, name="watcher"))
    await page.goto(f"/ui/campaigns/{campaign_id}")
    chart = page.locator("#opens-chart")
    await expect(chart).to_have_attribute("data-total", "4")
    await expect(chart.locator("#opens-chart-caption")).to_contain_text(
        "4 opens, at most 3 in one second"
    )
    bars = chart.locator("rect.opens-bar")
    await expect(bars).to_have_count(2)
    tall, short = [await bars.nth(i).bounding_box() for i in range(2)]
    assert tall is not None and short is not None
    # Drawn, on screen, and to scale: the busy second three times the quiet one.
    assert tall["width"] > 0 and tall["height"] > 0
    assert abs(tall["height"] / short["height"] - 3) < 0.1
    assert short["x"] > tall["x"]
    svg = await chart.locator("svg").bounding_box()
    assert svg is not None and svg["width"] > 250 and svg["height"] >= 100
    await expect(page.locator(".wave-engagement").first).to_contain_text("opened 4")
    await no_horizontal_scroll(page)
    await shot(page, "opens-chart")
