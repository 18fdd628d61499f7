"""Four-eyes approval on the campaign page: waiting for approval, who may approve, the
Approve button, and the person signed in."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from app.auth.models import Scope
from app.main import create_app
from app.runtime import Runtime
from app.settings import Environment
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.support import add_devices, campaign_body
from tests.ui.browser import shot, sign_in
from tests.ui.support import api, form_token
from tests.ui.support import sign_in as form_sign_in

STAGED = {"waves": [{"percent": 1, "hold_seconds": 600}, {"percent": 100}]}
REWRITTEN = {"title": "Your November statement", "body": "It is ready in the app, with a fee."}
_BINDING_FIELD = re.compile(r'name="expected_binding" value="([0-9a-f]{64})"')


def read_binding(html: str) -> str:
    """The binding the approval form carries: the campaign as the page showed it."""
    found = _BINDING_FIELD.search(html)
    assert found, "no expected_binding field in the approval form"
    return found.group(1)


async def approve_as_shown(
    client: httpx.AsyncClient, campaign_id: str, page: httpx.Response, **extra: str
) -> httpx.Response:
    """Press Approve on the campaign page `page`, its box ticked, for the campaign as shown."""
    return await client.post(
        f"/ui/campaigns/{campaign_id}/approve",
        data={
            "csrf": form_token(page.text),
            "confirm": "yes",
            "expected_binding": read_binding(page.text),
            **extra,
        },
    )


def _form_client(db: Runtime, **settings: Any) -> httpx.AsyncClient:
    configured = db.settings.model_copy(update=settings)
    app = create_app(configured, runtime=dataclasses.replace(db, settings=configured))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://wavecast.test"
    )


async def test_the_author_waits_and_a_second_person_approves_from_the_form(
    db: Runtime, make_key: KeyMaker, make_person: PersonMaker
) -> None:
    author = await make_key(
        Scope.admin, name="author laptop", person=await make_person("Author Person")
    )
    approver = await make_key(
        Scope.campaigns_read,
        Scope.campaigns_approve,
        name="approver laptop",
        person=await make_person("Approver Person"),
    )
    async with _form_client(db, approval_required_above=0) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=bearer(author))
        campaign_id = created.json()["id"]

        await form_sign_in(client, author)
        page = await client.get(f"/ui/campaigns/{campaign_id}")
        assert "Signed in as <strong>Author Person</strong>" in page.text
        assert 'id="approval-waiting"' in page.text and "Waiting for approval" in page.text
        assert "Approver Person" in page.text  # who may approve
        own = await approve_as_shown(client, campaign_id, page)
        assert own.status_code == 403, own.text
        assert "second person" in own.text

    async with _form_client(db, approval_required_above=0) as client:
        await form_sign_in(client, approver)
        page = await client.get(f"/ui/campaigns/{campaign_id}")
        unconfirmed = await client.post(
            f"/ui/campaigns/{campaign_id}/approve", data={"csrf": form_token(page.text)}
        )
        assert unconfirmed.status_code == 422
        approved = await approve_as_shown(client, campaign_id, page, comment="looks right")
        assert approved.status_code == 303, approved.text
        page = await client.get(f"/ui/campaigns/{campaign_id}")
        assert 'id="approval-given"' in page.text
        assert "Approver Person (ui)" in page.text
        # The audit trail names the person and the channel.
        assert '<strong class="audit-person">Approver Person</strong> via ui' in page.text
        status = await client.get(f"/v1/campaigns/{campaign_id}/approval", headers=bearer(approver))
        assert status.json()["approval"]["channel"] == "ui"
        assert status.json()["approval"]["comment"] == "looks right"
        started = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=bearer(author))
        assert started.status_code == 200, started.text


@pytest.mark.slow
async def test_in_production_the_page_waits_for_approval_and_approves(
    deployed_page: Callable[[str], Awaitable[Any]],
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 30)
    author = bearer(
        await make_key(
            Scope.campaigns_read,
            Scope.campaigns_write,
            Scope.campaigns_operate,
            name="marketing laptop",
            person=await make_person("Marta Author"),
        )
    )
    async with api(db, Environment.production) as client:
        created = await client.post(
            "/v1/campaigns", json=campaign_body(rollout=STAGED), headers=author
        )
        assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    page = await deployed_page("production")
    await sign_in(
        page,
        await make_key(
            Scope.campaigns_read,
            Scope.campaigns_approve,
            name="compliance laptop",
            person=await make_person("Piotr Approver"),
        ),
    )
    await expect(page.locator("#signed-in-person")).to_contain_text("Piotr Approver")
    await page.goto(f"/ui/campaigns/{campaign_id}")
    await expect(page.locator("#approval-waiting")).to_contain_text("Waiting for approval")
    await expect(page.locator("#approval-authors")).to_have_text("Marta Author")
    await expect(page.locator("#approval-may-approve")).to_contain_text("Piotr Approver")
    await expect(page.locator("#what-it-sends")).to_be_visible()
    await expect(page.locator("#wave-plan")).to_be_visible()
    await shot(page, "30-campaign-waiting-for-approval")
    form = page.locator("#action-approve")
    await form.locator("#approve-comment").fill("Read the text, audience and waves")
    await form.locator('input[name="confirm"]').check()
    await form.locator('button[type="submit"]').click()
    await expect(page.locator("#approval-given")).to_contain_text("Piotr Approver")
    await expect(page.locator("#approval-waiting")).to_have_count(0)
    await shot(page, "31-campaign-approved")
    async with api(db, Environment.production) as client:
        started = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=author)
        assert started.status_code == 200, started.text


async def test_an_edit_landing_after_the_page_was_read_is_not_approved_by_its_form(
    db: Runtime, make_key: KeyMaker, make_person: PersonMaker
) -> None:
    author = bearer(
        await make_key(Scope.admin, name="author laptop", person=await make_person("Author"))
    )
    approver = await make_key(
        Scope.campaigns_read,
        Scope.campaigns_approve,
        name="approver laptop",
        person=await make_person("Approver"),
    )
    async with _form_client(db, approval_required_above=0) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        campaign_id = created.json()["id"]
        await form_sign_in(client, approver)
        page = await client.get(f"/ui/campaigns/{campaign_id}")
        read = read_binding(page.text)
        edited = await client.patch(
            f"/v1/campaigns/{campaign_id}", json={"content": REWRITTEN}, headers=author
        )
        assert edited.status_code == 200, edited.text
        stale = await client.post(
            f"/ui/campaigns/{campaign_id}/approve",
            data={"csrf": form_token(page.text), "confirm": "yes", "expected_binding": read},
        )
        assert stale.status_code == 409, stale.text
        assert "the campaign changed since it was read for approval" in stale.text
        # The page it answers with shows the campaign as it is now, with its own binding.
        assert "with a fee" in stale.text and read_binding(stale.text) != read
        missing = await client.post(
            f"/ui/campaigns/{campaign_id}/approve",
            data={"csrf": form_token(page.text), "confirm": "yes"},
        )
        assert missing.status_code == 422 and "reload" in missing.text
        status = await client.get(f"/v1/campaigns/{campaign_id}/approval", headers=author)
        assert status.json()["approval"] is None and status.json()["waiting"] is True
        approved = await client.post(
            f"/ui/campaigns/{campaign_id}/approve",
            data={
                "csrf": form_token(stale.text),
                "confirm": "yes",
                "expected_binding": read_binding(stale.text),
            },
        )
        assert approved.status_code == 303, approved.text


@pytest.mark.slow
async def test_in_the_browser_an_edit_after_the_page_loaded_is_refused_on_approve(
    deployed_page: Callable[[str], Awaitable[Any]],
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
) -> None:
    from playwright.async_api import expect

    await add_devices(db, 30)
    author = bearer(
        await make_key(
            Scope.campaigns_read,
            Scope.campaigns_write,
            name="marketing laptop",
            person=await make_person("Marta Author"),
        )
    )
    async with api(db, Environment.production) as client:
        created = await client.post(
            "/v1/campaigns", json=campaign_body(rollout=STAGED), headers=author
        )
        assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    page = await deployed_page("production")
    await sign_in(
        page,
        await make_key(
            Scope.campaigns_read,
            Scope.campaigns_approve,
            name="compliance laptop",
            person=await make_person("Piotr Approver"),
        ),
    )
    await page.goto(f"/ui/campaigns/{campaign_id}")
    await expect(page.locator("#approval-waiting")).to_contain_text("Waiting for approval")
    # The author edits while the approver reads the page.
    async with api(db, Environment.production) as client:
        edited = await client.patch(
            f"/v1/campaigns/{campaign_id}", json={"content": REWRITTEN}, headers=author
        )
        assert edited.status_code == 200, edited.text
    form = page.locator("#action-approve")
    await form.locator('input[name="confirm"]').check()
    await form.locator('button[type="submit"]').click()
    await expect(page.locator("#action-error")).to_contain_text(
        "the campaign changed since it was read for approval"
    )
    await expect(page.locator("#approval-waiting")).to_contain_text("Waiting for approval")
    await expect(page.locator("#approval-given")).to_have_count(0)
    async with api(db, Environment.production) as client:
        status = await client.get(f"/v1/campaigns/{campaign_id}/approval", headers=author)
        assert status.json()["approval"] is None


async def test_a_key_the_author_made_does_not_approve_from_the_form(
    db: Runtime, make_key: KeyMaker, make_person: PersonMaker
) -> None:
    """Signed in with a key the author made for her, Bea is refused on the campaign page as
    through the API: the author read that key when making it."""
    author = bearer(await make_key(Scope.admin, person=await make_person("Author Person")))
    bea = await make_person("Bea Approver")
    async with _form_client(db, approval_required_above=0) as client:
        made = await client.post(
            "/v1/keys",
            json={
                "name": "Bea's laptop",
                "scopes": ["campaigns:read", "campaigns:approve"],
                "person_id": str(bea),
            },
            headers=author,
        )
        assert made.status_code == 201, made.text
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        campaign_id = created.json()["id"]

        await form_sign_in(client, made.json()["key"])
        page = await client.get(f"/ui/campaigns/{campaign_id}")
        assert "Signed in as <strong>Bea Approver</strong>" in page.text
        refused = await approve_as_shown(client, campaign_id, page)
        assert refused.status_code == 403, refused.text
        assert "key was made by Author Person, who wrote this campaign" in refused.text
        status = await client.get(f"/v1/campaigns/{campaign_id}/approval", headers=author)
        assert status.json()["approval"] is None
