"""Helpers for the campaign form's tests: signing in, reading tokens off pages, the API as a
deployment of any environment answers, and a first wave sent in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid

import httpx

from app.campaigns import service
from app.delivery.sender import pump
from app.main import create_app
from app.rollout import engine
from app.runtime import Runtime
from app.settings import Environment
from app.ui import sessions
from tests.support import sender_deps

HOST = "wavecast.test"
_CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def form_token(html: str) -> str:
    found = _CSRF_FIELD.search(html)
    assert found, "no csrf field on the page"
    return found.group(1)


def page_token(html: str) -> str:
    found = _CSRF_META.search(html)
    assert found, "no csrf meta on the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str, next_url: str = "/ui/campaigns") -> str:
    """Sign in through the form; returns the CSRF token of the new session."""
    form = await client.get("/ui/sign-in")
    answer = await client.post(
        "/ui/sign-in", data={"key": key, "csrf": form_token(form.text), "next": next_url}
    )
    assert answer.status_code == 303, answer.text
    landing = await client.get("/ui/kill-switch")
    assert landing.status_code == 200, landing.text
    return page_token(landing.text)


def session_cookie(client: httpx.AsyncClient) -> str | None:
    return client.cookies.get(sessions.COOKIE, domain=HOST, path="/ui")


def api(db: Runtime, environment: Environment = Environment.development) -> httpx.AsyncClient:
    """The API in-process, as a deployment of `environment` would answer."""
    settings = db.settings.model_copy(update={"env": environment})
    app = create_app(settings, runtime=dataclasses.replace(db, settings=settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


async def send_first_wave(db: Runtime, campaign_id: uuid.UUID) -> None:
    """Release and send wave 1 in this process, as a worker would, until it has finished."""
    deps = await sender_deps(db)
    try:
        for _ in range(400):
            report = await engine.tick(db.sessionmaker, deps.control, db.settings)
            if campaign_id in report.sendable:
                await pump(deps, campaign_id, budget_seconds=10)
            async with db.sessionmaker() as session:
                first = (await service.waves(session, campaign_id))[0]
            if first.status == "finished":
                return
            await asyncio.sleep(0.02)
    finally:
        await deps.control.watch.aclose()
    raise AssertionError("wave 1 did not finish")
