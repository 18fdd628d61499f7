"""Every form page names the deployment's environment in its header; production's badge is
red and says PRODUCTION, so a stop is never pressed in the wrong tab by mistake."""

from __future__ import annotations

import dataclasses
import re
import uuid

import httpx
import pytest

from app.auth.models import Scope
from app.main import create_app
from app.runtime import Runtime
from app.settings import Environment
from app.ui.render import STATIC
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body
from tests.ui.support import sign_in

BADGE = re.compile(
    r'<header class="top">.*?<span class="env-badge env-badge-(?P<env>[a-z]+)" id="environment"'
    r' data-environment="(?P<data>[a-z]+)">\s*<span class="sr-only">Environment: </span>'
    r"(?P<word>[A-Z]+)\s*</span>.*?</header>",
    re.DOTALL,
)


def _client(runtime: Runtime, environment: Environment) -> httpx.AsyncClient:
    settings = runtime.settings.model_copy(update={"env": environment})
    app = create_app(settings, runtime=dataclasses.replace(runtime, settings=settings))
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="https://wavecast.test")


async def _campaign(db: Runtime, make_key: KeyMaker) -> str:
    async with _client(db, Environment.development) as api:
        created = await api.post(
            "/v1/campaigns", json=campaign_body(), headers=bearer(await make_key(Scope.admin))
        )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


@pytest.mark.parametrize("environment", list(Environment))
async def test_every_form_page_carries_the_environment_badge(
    db: Runtime, make_key: KeyMaker, environment: Environment
) -> None:
    campaign_id = await _campaign(db, make_key)
    async with _client(db, environment) as client:
        pages = {"/ui/sign-in": await client.get("/ui/sign-in")}
        await sign_in(client, await make_key(Scope.admin))
        for path in (
            "/ui/campaigns",
            "/ui/campaigns/new",
            f"/ui/campaigns/{campaign_id}",
            "/ui/kill-switch",
            "/ui/audit",
            "/ui/devices",
            "/ui/segments",
            f"/ui/campaigns/{uuid.uuid4()}",  # the error page
        ):
            pages[path] = await client.get(path)
    for path, answer in pages.items():
        assert answer.status_code in (200, 404), (path, answer.status_code)
        found = BADGE.search(answer.text)
        assert found, f"no environment badge in the header of {path}"
        assert found["env"] == found["data"] == environment.value, path
        assert found["word"] == environment.value.upper(), path
        assert f'<body class="env-{environment.value}">' in answer.text, path
        assert "style=" not in answer.text, path  # the strict CSP allows no inline styles


async def test_the_production_badge_is_red_and_spelled_out(db: Runtime) -> None:
    async with _client(db, Environment.production) as client:
        html = (await client.get("/ui/sign-in")).text
    found = BADGE.search(html)
    assert found and found["env"] == "production" and found["word"] == "PRODUCTION"
    css = (STATIC / "ui.css").read_text(encoding="utf-8")
    rule = re.search(r"\.env-badge-production \{([^}]*)\}", css)
    assert rule and "background: var(--danger)" in rule[1]
    assert re.search(r"--danger: #b3261e", css)  # red
    assert "body.env-production .top" in css
