"""An approval approves the campaign as the approver read it: an edit landing between the
read (GET .../approval) and the approve call is refused, never approved unseen."""

from __future__ import annotations

from app.auth.models import Scope
from app.runtime import Runtime
from tests.approval.test_approval_api import api
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.support import campaign_body

REWRITTEN = {"title": "Your November statement", "body": "It is ready in the app."}


async def test_an_edit_after_the_read_is_refused_409_and_nothing_is_approved(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    author = bearer(await make_key(Scope.admin, person=await make_person("Author")))
    approver = bearer(
        await make_key(
            Scope.campaigns_approve, Scope.campaigns_read, person=await make_person("Approver")
        )
    )
    async with api(db, approval_required_above=0) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        campaign = created.json()["id"]
        read = (await client.get(f"/v1/campaigns/{campaign}/approval", headers=approver)).json()
        assert len(read["binding"]) == 64

        edited = await client.patch(
            f"/v1/campaigns/{campaign}", json={"content": REWRITTEN}, headers=author
        )
        assert edited.status_code == 200, edited.text
        stale = await client.post(
            f"/v1/campaigns/{campaign}/approve",
            json={"expected_binding": read["binding"], "comment": "read it"},
            headers=approver,
        )
        assert stale.status_code == 409, stale.text
        problem = stale.json()
        assert "the campaign changed since it was read for approval" in problem["detail"]
        assert problem["expected_binding"] == read["binding"]
        now = (await client.get(f"/v1/campaigns/{campaign}/approval", headers=approver)).json()
        assert problem["binding"] == now["binding"] != read["binding"]
        assert now["approval"] is None and now["waiting"] is True
        approvals = await client.get(
            "/v1/audit", params={"action": "campaign.approved"}, headers=author
        )
        assert approvals.json()["items"] == []

        # Read again, approved as read.
        approved = await client.post(
            f"/v1/campaigns/{campaign}/approve",
            json={"expected_binding": now["binding"]},
            headers=approver,
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["approval"]["binding"] == now["binding"]
        assert approved.json()["binding"] == now["binding"]


async def test_expected_binding_is_a_binding_and_stays_optional(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    author = bearer(await make_key(Scope.admin, person=await make_person("Author")))
    approver = bearer(
        await make_key(
            Scope.campaigns_approve, Scope.campaigns_read, person=await make_person("Approver")
        )
    )
    async with api(db, approval_required_above=0) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        campaign = created.json()["id"]
        malformed = await client.post(
            f"/v1/campaigns/{campaign}/approve",
            json={"expected_binding": "not a hash"},
            headers=approver,
        )
        assert malformed.status_code == 422, malformed.text
        assert "expected_binding" in malformed.text
        plain = await client.post(
            f"/v1/campaigns/{campaign}/approve", json={"comment": "as it is"}, headers=approver
        )
        assert plain.status_code == 200, plain.text
