"""Who may not approve a campaign: everyone who wrote any of it, not only its creator and
its last editor (read from the audit log's created and edited events)."""

from __future__ import annotations

import uuid

from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.campaigns import service as campaigns
from app.campaigns.schemas import CampaignPatch
from app.db.session import unit_of_work
from app.runtime import Runtime
from tests.approval.test_approval_api import api
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.support import campaign_body

REWRITTEN = {"title": "Your November statement", "body": "It is ready in the app."}


async def _writer(make_person: PersonMaker, make_key: KeyMaker, name: str) -> dict[str, str]:
    person = await make_person(name)
    return bearer(
        await make_key(
            Scope.campaigns_write, Scope.campaigns_approve, Scope.campaigns_read, person=person
        )
    )


async def test_whoever_rewrote_the_content_may_not_approve_after_someone_else_edits_it(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    alice = await _writer(make_person, make_key, "Alice")
    bob = await _writer(make_person, make_key, "Bob")
    carol = await _writer(make_person, make_key, "Carol")
    async with api(db, approval_required_above=0) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=alice)
        campaign = created.json()["id"]
        rewritten = await client.patch(
            f"/v1/campaigns/{campaign}", json={"content": REWRITTEN}, headers=bob
        )
        assert rewritten.status_code == 200, rewritten.text
        renamed = await client.patch(
            f"/v1/campaigns/{campaign}", json={"name": "Statement"}, headers=alice
        )
        assert renamed.status_code == 200, renamed.text

        # Bob's words are in it: he may not approve them, though Alice edited last.
        own_words = await client.post(f"/v1/campaigns/{campaign}/approve", headers=bob)
        assert own_words.status_code == 403, own_words.text
        assert "Bob created or edited this campaign" in own_words.json()["detail"]
        assert (
            await client.post(f"/v1/campaigns/{campaign}/approve", headers=alice)
        ).status_code == 403

        shown = (await client.get(f"/v1/campaigns/{campaign}/approval", headers=carol)).json()
        assert shown["authors"] == ["Alice", "Bob"]
        assert shown["may_approve"] == ["Carol"]
        approved = await client.post(f"/v1/campaigns/{campaign}/approve", headers=carol)
        assert approved.status_code == 200, approved.text
        assert approved.json()["approval"]["person_name"] == "Carol"


async def test_an_edit_by_no_person_keeps_the_earlier_authors(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    alice = await _writer(make_person, make_key, "Alice")
    bob = await _writer(make_person, make_key, "Bob")
    async with api(db, approval_required_above=0) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=alice)
        campaign = created.json()["id"]
        assert (
            await client.patch(
                f"/v1/campaigns/{campaign}", json={"content": REWRITTEN}, headers=bob
            )
        ).status_code == 200
        # The system (or the CLI) edits it: no person, so no one's hand is cleared.
        async with unit_of_work(db.sessionmaker) as session:
            await campaigns.patch(
                session,
                db.settings,
                SYSTEM,
                uuid.UUID(campaign),
                CampaignPatch.model_validate({"name": "Statement"}),
            )
        refused = await client.post(f"/v1/campaigns/{campaign}/approve", headers=bob)
        assert refused.status_code == 403, refused.text
        shown = (await client.get(f"/v1/campaigns/{campaign}/approval", headers=bob)).json()
        assert shown["authors"] == ["Alice", "Bob"]
