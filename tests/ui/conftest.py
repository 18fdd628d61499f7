"""Fixtures for the campaign form's browser tests (opt-in: only tests that ask use them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from app.settings import Settings
from tests.ui.browser import CHROMIUM_ARGS, CSP, api_process, chromium_or_skip


@pytest.fixture(scope="session")
def ui_url(settings: Settings) -> Iterator[str]:
    chromium_or_skip()
    with api_process(settings) as url:
        yield url


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Any]:
    path = chromium_or_skip()
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=20_000)  # assertions wait for live pages on a loaded machine
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


@pytest.fixture
async def browser_page(chromium: Any, ui_url: str) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) on a 375 px wide screen, with the production
    Content-Security-Policy applied to every answer; a CSP violation fails the test."""
    context = await chromium.new_context(base_url=ui_url, viewport={"width": 375, "height": 800})

    async def with_csp(route: Any) -> None:
        response = await route.fetch(max_redirects=0)
        headers = {**response.headers, "content-security-policy": CSP}
        await route.fulfill(response=response, headers=headers)

    await context.route("**/ui/**", with_csp)
    page = await context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.on("pageerror", lambda error: violations.append(f"script error: {error}"))
    # Generous: a loaded CI machine can take seconds to answer; nothing here measures speed.
    page.set_default_timeout(45_000)
    yield page
    await context.close()
    assert violations == [], violations
