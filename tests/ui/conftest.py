"""Fixtures for the campaign form's browser tests (opt-in: only tests that ask use them)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from pathlib import Path
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
def deployment_url(settings: Settings, test_dir: Path) -> Iterator[Callable[[str], str]]:
    """The URL of a `wavecast api` deployed as `environment` ("staging" or "production") with
    the real provider, started on first use and kept for the session. Nothing here sends
    (no worker runs), so the FCM credentials only have to satisfy the settings."""
    chromium_or_skip()
    if settings.effective_database_url.startswith("sqlite"):
        pytest.skip("a production deployment refuses SQLite: set WAVECAST_TEST_DATABASE_URL")
    credentials = test_dir / "fcm-ui-tests.json"
    credentials.write_text(json.dumps({"type": "service_account", "project_id": "wavecast-ui"}))
    started: dict[str, str] = {}
    with ExitStack() as processes:

        def url(environment: str) -> str:
            if environment not in started:
                started[environment] = processes.enter_context(
                    api_process(
                        settings,
                        WAVECAST_ENV=environment,
                        WAVECAST_PROVIDER="real",
                        WAVECAST_FCM_CREDENTIALS=str(credentials),
                    )
                )
            return started[environment]

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


@asynccontextmanager
async def _browser_page(chromium: Any, base_url: str) -> AsyncIterator[Any]:
    context = await chromium.new_context(base_url=base_url, viewport={"width": 375, "height": 800})

    async def with_csp(route: Any) -> None:
        # Under load Playwright can dispose of a fetched answer before it is handed on
        # ("Fetch response has been disposed"): fetch it once more. A request the page has
        # dropped meanwhile (it navigated on) needs no answer at all.
        for attempt in (1, 2):
            try:
                response = await route.fetch(max_redirects=0)
                headers = {**response.headers, "content-security-policy": CSP}
                await route.fulfill(response=response, headers=headers)
                return
            except Exception as exc:  # playwright's Error, imported only with the browser
                gone = "disposed" in str(exc) or "closed" in str(exc)
                if not gone:
                    raise
                if attempt == 2:
                    with contextlib.suppress(Exception):
                        await route.abort()

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
    try:
        yield page
    finally:
        await context.close()
    assert violations == [], violations


@pytest.fixture
async def browser_page(chromium: Any, ui_url: str) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) on a 375 px wide screen, with the production
    Content-Security-Policy applied to every answer; a CSP violation fails the test."""
    async with _browser_page(chromium, ui_url) as page:
        yield page


@pytest.fixture
async def deployed_page(
    chromium: Any, deployment_url: Callable[[str], str]
) -> AsyncIterator[Callable[[str], Awaitable[Any]]]:
    """Opens a page like `browser_page` on a deployment of the given environment
    (`deployment_url`)."""
    async with AsyncExitStack() as pages:

        async def open_page(environment: str) -> Any:
            return await pages.enter_async_context(
                _browser_page(chromium, deployment_url(environment))
            )

        yield open_page
