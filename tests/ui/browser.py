"""A real `wavecast api` process and a headless Chromium driven by Playwright.

Chromium is Debian's (`/usr/bin/chromium`). Without it the browser tests skip, saying why,
unless `WAVECAST_REQUIRE_BROWSER=1` (CI), where its absence is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.support import worker_env

CHROMIUM = os.environ.get("WAVECAST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The policy the deployment puts on every /ui answer; the browser tests apply it too, so a
# page that needed an inline script or style would break here first.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def chromium_or_skip() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path:
        return path
    reason = (
        f"no Chromium at {CHROMIUM} and none on PATH "
        "(install it: apt-get install chromium; CI does)"
    )
    if os.environ.get("WAVECAST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"WAVECAST_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def api_process(settings: Settings, **extra: str) -> Iterator[str]:
    """`wavecast api` on a free port against the test database and Redis; yields its URL.
    `extra` adds environment variables (`WAVECAST_ENV=production`...)."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="ui-api-", suffix=".log") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=worker_env(settings, **extra),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    raise AssertionError(
                        "wavecast api exited: " + Path(log.name).read_text()[-2000:]
                    )
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("wavecast api did not answer within 90 s")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Any, key: str) -> None:
    """With the keyboard only: the key field has focus, Enter submits."""
    await page.goto("/ui/campaigns")
    assert "/ui/sign-in" in page.url
    from playwright.async_api import expect

    # Typing before the autofocus lands would lose the key's first characters.
    await expect(page.locator("#key")).to_be_focused()
    await page.keyboard.type(key)
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/ui/campaigns$"))


async def no_horizontal_scroll(page: Any) -> None:
    await page.wait_for_load_state("load")  # measured with the stylesheet applied
    width = await page.evaluate("document.documentElement.scrollWidth")
    wide = await page.evaluate(
        "Array.from(document.querySelectorAll('body *'))"
        ".filter(e => e.getBoundingClientRect().right > 375 && !e.closest('.scroll'))"
        ".map(e => e.tagName + '.' + e.className).join(', ')"
    )
    assert width <= 375, f"{page.url} is {width} px wide on a 375 px screen: {wide}"
