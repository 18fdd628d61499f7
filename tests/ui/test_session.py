"""Sign-in, sessions, CSRF and scopes of the campaign form (httpx against the app)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from app.auth import repository as auth_repo
from app.auth import service as auth_service
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.campaigns.state import CampaignStatus
from app.db.session import unit_of_work
from app.killswitch import service as killswitch
from app.runtime import Runtime
from app.ui import sessions
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, campaign_status
from tests.ui.support import HOST, form_token, page_token, session_cookie, sign_in

PAGES = [
    "/ui/campaigns",
    "/ui/campaigns?status=running",
    "/ui/campaigns/new",
    f"/ui/campaigns/{uuid.uuid4()}",
    f"/ui/campaigns/{uuid.uuid4()}/live",
    "/ui/kill-switch",
    "/ui/audit",
    "/ui/devices",
    "/ui/segments",
]
POSTS = [
    "/ui/campaigns/new",
    f"/ui/campaigns/{uuid.uuid4()}/kill",
    "/ui/kill-switch/engage",
    "/ui/kill-switch/release",
    f"/ui/devices/{uuid.uuid4()}/test-device",
    "/ui/sign-out",
]


async def _session_count(db: Runtime) -> int:
    return len(await db.redis.keys("wavecast:ui:session:*"))


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_redirects_to_sign_in_without_a_session(
    client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/sign-in?next=%2Fui%2F")


@pytest.mark.parametrize("path", POSTS)
async def test_every_post_redirects_to_sign_in_without_a_session(
    client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.post(path, data={"csrf": "x", "confirm": "yes", "reason": "r"})
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/sign-in")


async def test_a_made_up_session_cookie_is_no_session(client: httpx.AsyncClient) -> None:
    client.cookies.set(sessions.COOKIE, "made-up", domain=HOST, path="/ui")
    assert (await client.get("/ui/campaigns")).status_code == 303


async def test_live_endpoints_answer_401_problem_without_a_session(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post("/ui/api/campaigns/preview", data={"title": "x"})
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_sign_in_sets_a_strict_http_only_cookie_scoped_to_ui(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    key = await make_key(Scope.campaigns_read)
    form = await client.get("/ui/sign-in")
    answer = await client.post(
        "/ui/sign-in", data={"key": key, "csrf": form_token(form.text), "next": "/ui/audit"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/audit"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith(sessions.COOKIE + "=")
    )
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/ui"} <= attributes
    assert "secure" not in attributes  # plain http here; https requests get Secure
    assert await _session_count(db) == 1
    assert (await client.get("/ui/audit")).status_code == 200


async def test_sign_in_never_adopts_the_browsers_session_id(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    key = await make_key(Scope.campaigns_read)
    await sign_in(client, key)
    first = session_cookie(client)
    assert first
    # Signing in again (or with an id planted by someone else) ends the old id.
    await sign_in(client, key)
    second = session_cookie(client)
    assert second and second != first
    assert await _session_count(db) == 1
    other = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    async with other:
        other.cookies.set(sessions.COOKIE, first, domain=HOST, path="/ui")
        assert (await other.get("/ui/campaigns")).status_code == 303
        planted = "planted-by-an-attacker-0000000000000000"
        other.cookies.set(sessions.COOKIE, planted, domain=HOST, path="/ui")
        await sign_in(other, key)
        assert session_cookie(other) not in (planted, first, second)


async def test_a_wrong_key_is_refused_and_starts_no_session(
    client: httpx.AsyncClient, db: Runtime
) -> None:
    form = await client.get("/ui/sign-in")
    answer = await client.post(
        "/ui/sign-in", data={"key": "wck_nope_nope", "csrf": form_token(form.text)}
    )
    assert answer.status_code == 401
    assert "unknown or revoked" in answer.text
    assert session_cookie(client) is None
    assert await _session_count(db) == 0


async def test_sign_in_needs_its_own_form_token(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    key = await make_key(Scope.admin)
    await client.get("/ui/sign-in")
    answer = await client.post("/ui/sign-in", data={"key": key, "csrf": "guessed"})
    assert answer.status_code == 403
    assert await _session_count(db) == 0


async def test_a_post_without_the_right_csrf_token_is_refused(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    token = await sign_in(client, await make_key(Scope.admin))
    form = {"reason": "app is down", "confirm": "yes"}
    for bad in ({}, {"csrf": ""}, {"csrf": token[:-2] + "xx"}):
        answer = await client.post("/ui/kill-switch/engage", data={**form, **bad})
        assert answer.status_code == 403
        assert "security token" in answer.text
        assert answer.headers["content-type"].startswith("text/html")
    async with unit_of_work(db.sessionmaker) as session:
        assert not await killswitch.is_engaged(session)
    # A header token serves the page's scripts; a wrong one is refused the same way.
    refused = await client.post(
        "/ui/api/campaigns/preview", data={"title": "x"}, headers={"X-CSRF-Token": "nope"}
    )
    assert refused.status_code == 403
    answer = await client.post("/ui/kill-switch/engage", data={**form, "csrf": token})
    assert answer.status_code == 303
    async with unit_of_work(db.sessionmaker) as session:
        assert await killswitch.is_engaged(session)


async def test_revoking_the_key_ends_the_session_at_once(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await sign_in(client, await make_key(Scope.campaigns_read, name="to revoke"))
    assert (await client.get("/ui/campaigns")).status_code == 200
    async with unit_of_work(db.sessionmaker) as session:
        (key,) = list(await auth_repo.list_keys(session, include_revoked=False))
        await auth_service.revoke_key(session, SYSTEM, key.id, reason="left the team")
    answer = await client.get("/ui/campaigns")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/sign-in")
    assert await _session_count(db) == 0


async def test_sign_out_deletes_the_session(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    token = await sign_in(client, await make_key(Scope.campaigns_read))
    cookie = session_cookie(client)
    answer = await client.post("/ui/sign-out", data={"csrf": token})
    assert answer.status_code == 303
    assert await _session_count(db) == 0
    client.cookies.set(sessions.COOKIE, cookie or "", domain=HOST, path="/ui")
    assert (await client.get("/ui/campaigns")).status_code == 303


async def test_next_never_leaves_the_form(client: httpx.AsyncClient, make_key: KeyMaker) -> None:
    key = await make_key(Scope.campaigns_read)
    for target in ("https://evil.example/", "//evil.example/ui/", "/v1/keys", "/ui//evil"):
        form = await client.get("/ui/sign-in")
        answer = await client.post(
            "/ui/sign-in", data={"key": key, "csrf": form_token(form.text), "next": target}
        )
        assert answer.headers["location"] == "/ui/campaigns"


async def _campaign(client: httpx.AsyncClient, key: str) -> str:
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=bearer(key))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_a_read_only_key_sees_the_campaign_but_cannot_kill_it(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 10)
    campaign_id = await _campaign(client, await make_key(Scope.campaigns_write))
    token = await sign_in(client, await make_key(Scope.campaigns_read))
    page = await client.get(f"/ui/campaigns/{campaign_id}")
    assert page.status_code == 200
    assert "Needs the <code>kill</code> scope" in page.text
    answer = await client.post(
        f"/ui/campaigns/{campaign_id}/kill",
        data={"csrf": token, "confirm": "yes", "reason": "wrong audience"},
    )
    assert answer.status_code == 403
    assert "lacks the &#39;kill&#39; scope" in answer.text
    assert await campaign_status(db, uuid.UUID(campaign_id)) is CampaignStatus.draft
    assert (await client.get("/ui/campaigns/new")).status_code == 403


async def test_kill_needs_a_reason_and_a_confirmation(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 10)
    campaign_id = await _campaign(client, await make_key(Scope.campaigns_write))
    token = await sign_in(client, await make_key(Scope.kill, Scope.campaigns_read))
    url = f"/ui/campaigns/{campaign_id}/kill"
    unconfirmed = await client.post(url, data={"csrf": token, "reason": "wrong audience"})
    assert unconfirmed.status_code == 422
    assert "tick the confirmation box" in unconfirmed.text
    no_reason = await client.post(url, data={"csrf": token, "confirm": "yes", "reason": "  "})
    assert "a reason is required" in no_reason.text
    assert await campaign_status(db, uuid.UUID(campaign_id)) is CampaignStatus.draft
    killed = await client.post(
        url, data={"csrf": token, "confirm": "yes", "reason": "wrong audience"}
    )
    assert killed.status_code == 303
    assert await campaign_status(db, uuid.UUID(campaign_id)) is CampaignStatus.killed
    page = await client.get(f"/ui/campaigns/{campaign_id}")
    assert "campaign.kill" in page.text and "wrong audience" in page.text


async def test_a_nul_character_in_a_form_is_refused_by_name(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 10)
    campaign_id = await _campaign(client, await make_key(Scope.campaigns_write))
    token = await sign_in(client, await make_key(Scope.kill, Scope.campaigns_read))
    answer = await client.post(
        f"/ui/campaigns/{campaign_id}/kill",
        data={"csrf": token, "confirm": "yes", "reason": "wrong\x00audience"},
    )
    assert answer.status_code == 422
    assert "reason" in answer.text and "NUL" in answer.text
    assert await campaign_status(db, uuid.UUID(campaign_id)) is CampaignStatus.draft


async def test_releasing_the_switch_needs_admin(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    token = await sign_in(client, await make_key(Scope.kill, Scope.campaigns_read))
    form = {"csrf": token, "confirm": "yes"}
    engaged = await client.post("/ui/kill-switch/engage", data={**form, "reason": "app is down"})
    assert engaged.status_code == 303
    banner = await client.get("/ui/campaigns")
    assert 'id="kill-switch-banner"' in banner.text and "app is down" in banner.text
    refused = await client.post("/ui/kill-switch/release", data={**form, "reason": "over"})
    assert refused.status_code == 403
    admin = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    async with admin:
        admin_token = await sign_in(admin, await make_key(Scope.admin, name="head of ops"))
        released = await admin.post(
            "/ui/kill-switch/release",
            data={"csrf": admin_token, "confirm": "yes", "reason": "incident over"},
        )
        assert released.status_code == 303
        assert 'id="kill-switch-banner"' not in (await admin.get("/ui/campaigns")).text
    async with unit_of_work(db.sessionmaker) as session:
        assert not await killswitch.is_engaged(session)


async def test_page_token_matches_the_session(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    token = await sign_in(client, await make_key(Scope.campaigns_read))
    page = await client.get("/ui/audit")
    assert page_token(page.text) == token
    assert page.headers["cache-control"] == "no-store"


async def test_errors_under_ui_are_pages_and_the_api_keeps_problem_json(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    key = await make_key(Scope.campaigns_read)
    await sign_in(client, key)
    for path in (f"/ui/campaigns/{uuid.uuid4()}", "/ui/campaigns/not-an-id", "/ui/nowhere"):
        answer = await client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html"), path
    api = await client.get(f"/v1/campaigns/{uuid.uuid4()}", headers=bearer(key))
    assert api.status_code == 404
    assert api.headers["content-type"].startswith("application/problem+json")
    invalid = await client.get("/v1/campaigns/not-an-id", headers=bearer(key))
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["field"] == "path.campaign_id"
