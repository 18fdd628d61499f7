from __future__ import annotations

import httpx
import pytest

from app.auth.models import Scope
from app.ops.security_headers import API_CSP, DOCS_CSP, UI_CSP, policy_for
from tests.conftest import KeyMaker, bearer

COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def test_policies_by_path() -> None:
    assert policy_for("/ui") == UI_CSP
    assert policy_for("/ui/campaigns/1") == UI_CSP
    assert policy_for("/uix") == API_CSP
    assert policy_for("/v1/devices") == API_CSP
    assert policy_for("/docs") == DOCS_CSP
    assert policy_for("/redoc") == DOCS_CSP
    assert UI_CSP == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    assert "'unsafe-inline'" not in UI_CSP
    assert "frame-ancestors 'none'" in DOCS_CSP


@pytest.mark.parametrize(
    ("method", "path", "authed", "csp"),
    [
        ("GET", "/v1/devices", True, API_CSP),
        ("GET", "/v1/devices", False, API_CSP),  # the 401
        ("POST", "/v1/keys", True, API_CSP),  # a 422
        ("GET", "/v1/nowhere", True, API_CSP),  # a 404
        ("GET", "/healthz", False, API_CSP),
        ("GET", "/openapi.json", False, API_CSP),
        ("GET", "/docs", False, DOCS_CSP),
        ("GET", "/redoc", False, DOCS_CSP),
        ("GET", "/ui", False, UI_CSP),  # whatever the form answers, it carries the form's CSP
    ],
)
async def test_every_answer_carries_the_headers(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    method: str,
    path: str,
    authed: bool,
    csp: str,
) -> None:
    headers = bearer(await make_key(Scope.admin)) if authed else {}
    answer = await client.request(
        method, path, headers=headers, json={} if method == "POST" else None
    )
    for name, value in COMMON.items():
        assert answer.headers[name] == value, name
    assert answer.headers["content-security-policy"] == csp
    if path.startswith("/v1"):
        assert answer.headers["cache-control"] == "no-store"


async def test_body_limit_refusals_carry_the_headers_too(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    answer = await client.post(
        "/v1/devices",
        content=b"x" * (2 * 1024 * 1024),
        headers={**bearer(await make_key(Scope.admin)), "content-type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
