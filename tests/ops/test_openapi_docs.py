"""The OpenAPI document says what each operation demands, and the pages that show it work
without internet access.

The document is read as a client reads it: each operation's declared `security` is then
checked against what the running application enforces, with keys made for the purpose.
The pages are checked twice: their HTML and the policy they are sent with name no other
host, and a real Chromium, with every request to another host aborted, renders them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.auth.models import Scope
from app.main import create_app
from app.settings import Settings
from tests.conftest import KeyMaker, bearer
from tests.ui.browser import CHROMIUM_ARGS, SCREENSHOTS, api_process, chromium_or_skip

DOCUMENT: dict[str, Any] = create_app().openapi()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
]
PAGES = ("/docs", "/redoc")


def _url(path: str) -> str:
    # Unknown ids are enough: authorisation is decided before the id is looked up.
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


def test_the_bearer_scheme_is_declared() -> None:
    scheme = DOCUMENT["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    assert "wck_" in scheme["bearerFormat"] and "wck_" in scheme["description"]


def test_every_operation_declares_its_security_and_only_probes_are_public() -> None:
    public = set()
    for method, path, operation in OPERATIONS:
        assert "security" in operation, f"{method} {path} declares no security"
        security = operation["security"]
        if security == []:
            public.add(path)
            continue
        [requirement] = security
        assert list(requirement) == ["bearer"], (method, path)
        assert set(requirement["bearer"]) <= {scope.value for scope in Scope}, (method, path)
        assert "Requires " in operation["description"], (method, path)
        for scope in requirement["bearer"]:
            assert f"`{scope}`" in operation["description"], (method, path)
    assert public == {"/healthz", "/readyz", "/metrics"}


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    OPERATIONS,
    ids=[f"{method} {path}" for method, path, _ in OPERATIONS],
)
async def test_the_declared_scope_is_the_enforced_one(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    method: str,
    path: str,
    operation: dict[str, Any],
) -> None:
    url = _url(path)
    without_key = await client.request(method, url)
    if operation["security"] == []:
        assert without_key.status_code not in (401, 403), without_key.text
        return
    assert without_key.status_code == 401, without_key.text
    [requirement] = operation["security"]
    declared = {Scope(value) for value in requirement["bearer"]}
    if not declared:
        # Any key will do: the weakest one is enough.
        answer = await client.request(method, url, headers=bearer(await make_key(Scope.kill)))
        assert answer.status_code not in (401, 403), answer.text
        return
    # Every other scope but admin (which holds them all): what the code enforces is declared.
    others = set(Scope) - declared - {Scope.admin}
    if others:
        refused = await client.request(method, url, headers=bearer(await make_key(*others)))
        assert refused.status_code == 403, (sorted(others), refused.text)
    # The declared scopes alone: nothing more is enforced than declared.
    accepted = await client.request(method, url, headers=bearer(await make_key(*declared)))
    assert accepted.status_code not in (401, 403), (sorted(declared), accepted.text)


class _References(HTMLParser):
    """What a page loads: `(tag, rel, url)` for every `src` and `href`."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attribute in ("src", "href", "spec-url", "data-openapi-url"):
            value = named.get(attribute)
            if value:
                self.found.append((tag, named.get("rel") or attribute, value))


EXPECTED_TYPES = {"script": "text/javascript", "stylesheet": "text/css", "icon": "image/png"}


@pytest.mark.parametrize("page", PAGES)
async def test_the_pages_load_everything_from_wavecast(
    client: httpx.AsyncClient, page: str
) -> None:
    answer = await client.get(page)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert re.search(r"(https?:)?//", answer.text) is None, answer.text
    references = _References()
    references.feed(answer.text)
    kinds = set()
    for tag, rel, url in references.found:
        assert urlsplit(url).netloc == "" and url.startswith("/"), url
        loaded = await client.get(url)
        assert loaded.status_code == 200, url
        if url == "/openapi.json":
            continue
        kind = "script" if tag == "script" else rel
        kinds.add(kind)
        assert loaded.headers["content-type"].startswith(EXPECTED_TYPES[kind]), url
    assert {"script", "icon"} <= kinds


@pytest.mark.parametrize("page", PAGES)
async def test_the_pages_policy_names_no_other_origin(client: httpx.AsyncClient, page: str) -> None:
    policy = (await client.get(page)).headers["content-security-policy"]
    directives = {name: sources for name, *sources in (d.split() for d in policy.split(";"))}
    allowed = {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}
    for name, sources in directives.items():
        assert set(sources) <= allowed, (name, sources)
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]  # no inline script, no eval


# In Chromium: a real `wavecast api` process, and every request for another host aborted.


@pytest.fixture(scope="module")
def docs_url(settings: Settings) -> Iterator[str]:
    chromium_or_skip()
    with api_process(settings) as url:
        yield url


@pytest.fixture
async def offline_page(docs_url: str) -> AsyncIterator[Any]:
    """A page in a fresh Chromium that may reach only the API process; what it tried to
    reach elsewhere, its script errors and the policy violations it met are checked after
    the test."""
    path = chromium_or_skip()
    from playwright.async_api import async_playwright

    here = urlsplit(docs_url).netloc
    elsewhere: list[str] = []
    problems: list[str] = []

    async def local_only(route: Any) -> None:
        if urlsplit(route.request.url).netloc == here:
            await route.continue_()
            return
        elsewhere.append(route.request.url)
        await route.abort()

    def on_console(message: Any) -> None:
        # ReDoc's footer logo is the one file it asks of another host; the policy refuses
        # it and ReDoc shows the footer's text alone (`app.ops.security_headers`).
        if "Content Security Policy" in message.text and "cdn.redoc.ly" not in message.text:
            problems.append(message.text)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS
        )
        context = await browser.new_context(base_url=docs_url)
        await context.route("**/*", local_only)
        page = await context.new_page()
        page.set_default_timeout(45_000)
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        yield page
        await browser.close()
    assert elsewhere == [], f"requests for other hosts: {elsewhere}"
    assert problems == [], problems


async def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))  # the first screen


def _served(docs_url: str) -> list[dict[str, Any]]:
    """The operations of the document the API process serves (the pages render that one)."""
    document = httpx.get(docs_url + "/openapi.json").json()
    return [
        operation for operations in document["paths"].values() for operation in operations.values()
    ]


@pytest.mark.slow
async def test_swagger_ui_renders_offline(offline_page: Any, docs_url: str) -> None:
    from playwright.async_api import expect

    served = _served(docs_url)
    page = offline_page
    await page.goto("/docs")
    await expect(page.locator(".opblock")).to_have_count(len(served))
    await expect(page.locator(".opblock-summary-path").first).to_have_text("/healthz")
    # The bearer scheme: the Authorize button, and a lock on each protected operation.
    await expect(page.locator("button.authorize")).to_be_visible()
    protected = sum(1 for operation in served if operation["security"])
    await expect(page.locator(".opblock .authorization__btn")).to_have_count(protected)
    await _shot(page, "docs-swagger-ui")


@pytest.mark.slow
async def test_redoc_renders_offline(offline_page: Any, docs_url: str) -> None:
    from playwright.async_api import expect

    served = _served(docs_url)
    page = offline_page
    await page.goto("/redoc")
    last = served[-1]["operationId"]
    await expect(page.locator(f"[data-section-id='operation/{last}']").first).to_be_attached()
    rendered = await page.eval_on_selector_all(
        "[data-section-id^='operation/']", "sections => sections.map(s => s.dataset.sectionId)"
    )
    assert set(rendered) == {f"operation/{operation['operationId']}" for operation in served}
    required = page.get_by_text(re.compile(r"Requires scope\s+campaigns:write"))
    await expect(required.first).to_be_attached()
    await _shot(page, "docs-redoc")
