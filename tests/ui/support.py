"""Helpers for the campaign form's tests: signing in and reading tokens off pages."""

from __future__ import annotations

import re

import httpx

from app.ui import sessions

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
