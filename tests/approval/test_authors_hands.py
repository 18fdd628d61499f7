"""An approval whose means passed through an author's hands is refused: a key an author
made (or made the key that made it), a Slack user an author bound. An author who holds admin
reads every key they make in the answer, and may bind any person to their own Slack user."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from app.approval import service as approval
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.campaigns import service as campaigns
from app.db.session import unit_of_work
from app.errors import Problem
from app.people import service as people
from app.people.schemas import PersonPatch
from app.runtime import Runtime
from tests.approval.test_approval_api import api
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.support import campaign_body


async def _person(client: httpx.AsyncClient, admin: dict[str, str], name: str) -> str:
    made = await client.post("/v1/people", json={"name": name, "kind": "human"}, headers=admin)
    assert made.status_code == 201, made.text
    person_id: str = made.json()["id"]
    return person_id


async def _key(
    client: httpx.AsyncClient, admin: dict[str, str], person_id: str, *scopes: Scope
) -> dict[str, str]:
    made = await client.post(
        "/v1/keys",
        json={"name": "key", "scopes": [s.value for s in scopes], "person_id": person_id},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    return bearer(made.json()["key"])


async def _approval(client: httpx.AsyncClient, campaign: str, headers: dict[str, str]) -> Any:
    return (await client.get(f"/v1/campaigns/{campaign}/approval", headers=headers)).json()


async def test_a_key_an_author_made_does_not_approve_their_campaign(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    author = bearer(await make_key(Scope.admin, person=await make_person("Author")))
    other_admin = bearer(await make_key(Scope.admin, person=await make_person("Other admin")))
    async with api(db, approval_required_above=0) as client:
        bea = await _person(client, author, "Bea")
        bea_from_author = await _key(client, author, bea, Scope.campaigns_approve)
        # A chain: the author makes Cy an admin, Cy makes Di's key.
        cy = await _person(client, author, "Cy")
        cy_admin = await _key(client, author, cy, Scope.admin)
        di = await _person(client, cy_admin, "Di")
        di_from_cy = await _key(client, cy_admin, di, Scope.campaigns_approve)

        campaign = (
            await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        ).json()["id"]
        shown = await _approval(client, campaign, author)
        assert "Bea" not in shown["may_approve"] and "Di" not in shown["may_approve"]
        assert shown["may_approve"] == ["Other admin"]

        refused = await client.post(f"/v1/campaigns/{campaign}/approve", headers=bea_from_author)
        assert refused.status_code == 403, refused.text
        assert "Bea's key was made by Author, who wrote this campaign" in refused.json()["detail"]
        chained = await client.post(f"/v1/campaigns/{campaign}/approve", headers=di_from_cy)
        assert chained.status_code == 403, chained.text
        # Cy wrote nothing: only the author is named.
        assert "Di's key was made by Author," in chained.json()["detail"]
        assert (await _approval(client, campaign, author))["approval"] is None

        # A key for Bea made by an admin who wrote nothing of it approves.
        bea_clean = await _key(client, other_admin, bea, Scope.campaigns_approve)
        assert "Bea" in (await _approval(client, campaign, author))["may_approve"]
        approved = await client.post(f"/v1/campaigns/{campaign}/approve", headers=bea_clean)
        assert approved.status_code == 200, approved.text
        assert approved.json()["approval"]["person_name"] == "Bea"

        # The same keys approve a campaign someone else wrote: Author's hands are not on it.
        theirs = (
            await client.post("/v1/campaigns", json=campaign_body(), headers=other_admin)
        ).json()["id"]
        other = await client.post(f"/v1/campaigns/{theirs}/approve", headers=di_from_cy)
        assert other.status_code == 200, other.text


async def test_whoever_made_the_key_a_campaign_was_written_with_does_not_approve_it(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    ann = bearer(await make_key(Scope.admin, person=await make_person("Ann")))
    async with api(db, approval_required_above=0) as client:
        # Ann makes Bo's key and could write with it: Bo's campaign is not hers to approve.
        bo = await _key(
            client,
            ann,
            await _person(client, ann, "Bo"),
            Scope.campaigns_write,
            Scope.campaigns_read,
        )
        campaign = (await client.post("/v1/campaigns", json=campaign_body(), headers=bo)).json()[
            "id"
        ]
        shown = await _approval(client, campaign, ann)
        assert shown["authors"] == ["Bo"] and "Ann" not in shown["may_approve"]
        refused = await client.post(f"/v1/campaigns/{campaign}/approve", headers=ann)
        assert refused.status_code == 403, refused.text
        assert "Ann made a key this campaign was written with" in refused.json()["detail"]

        # Fay's key was made by Ann too, but Ann wrote nothing: one admin may provision the
        # writer and the approver.
        fay = await _key(client, ann, await _person(client, ann, "Fay"), Scope.campaigns_approve)
        assert (await _approval(client, campaign, ann))["may_approve"] == ["Fay"]
        approved = await client.post(f"/v1/campaigns/{campaign}/approve", headers=fay)
        assert approved.status_code == 200, approved.text


async def test_a_slack_user_an_author_bound_does_not_approve_their_campaign(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    author_raw = await make_key(Scope.admin, person=await make_person("Author"))
    bea = await make_person("Bea")
    await make_key(Scope.campaigns_approve, person=bea)
    async with api(db, approval_required_above=0) as client:
        campaign = uuid.UUID(
            (
                await client.post("/v1/campaigns", json=campaign_body(), headers=bearer(author_raw))
            ).json()["id"]
        )
        # The author binds Bea to a Slack user of their own choosing.
        bound = await client.patch(
            f"/v1/people/{bea}", json={"slack_user_id": "UAUTHOR2"}, headers=bearer(author_raw)
        )
        assert bound.status_code == 200, bound.text

    async def approve_from_slack() -> None:
        async with unit_of_work(db.sessionmaker) as session:
            person = await people.get(session, bea)
            who = await people.slack_principal(session, person)
            await approval.approve(session, db.settings, who, campaign, comment=None)

    with pytest.raises(Problem) as refused:
        await approve_from_slack()
    assert refused.value.status == 403
    assert "Bea's Slack user was bound to them by Author" in refused.value.detail

    # Bound again by someone who wrote nothing of it (here the system, as the CLI would):
    # Bea's own Slack user approves.
    async with unit_of_work(db.sessionmaker) as session:
        for value in (None, "UBEA"):
            await people.update(session, SYSTEM, bea, PersonPatch(slack_user_id=value))
    await approve_from_slack()
    async with db.sessionmaker() as session:
        found = await campaigns.get(session, campaign)
        standing = await approval.standing_approval(session, found)
    assert standing is not None
    assert (standing.person_name, standing.channel, standing.key_id) == ("Bea", "slack", None)


async def test_a_slack_user_no_author_bound_approves_with_rights_an_author_gave(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    """The rights come from a key an author made, but only Gil presses Gil's Slack button:
    from Slack he may approve, with that key he may not."""
    author = bearer(await make_key(Scope.admin, person=await make_person("Author")))
    gil = await make_person("Gil", slack_user_id="UGIL")
    async with api(db, approval_required_above=0) as client:
        gil_key = await _key(client, author, str(gil), Scope.campaigns_approve)
        campaign = (
            await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        ).json()["id"]
        assert (await _approval(client, campaign, author))["may_approve"] == ["Gil"]
        with_key = await client.post(f"/v1/campaigns/{campaign}/approve", headers=gil_key)
        assert with_key.status_code == 403, with_key.text
    async with unit_of_work(db.sessionmaker) as session:
        who = await people.slack_principal(session, await people.get(session, gil))
        approved = await approval.approve(
            session, db.settings, who, uuid.UUID(campaign), comment=None
        )
    assert (approved.person_name, approved.channel) == ("Gil", "slack")


async def test_a_service_an_author_turned_into_a_human_does_not_approve(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    """The installation's first key is a service's, made on the server: an admin who holds
    it and writes a campaign may not make its person human and approve with it."""
    author = bearer(await make_key(Scope.admin, person=await make_person("Author")))
    local = await make_person("local admin", kind="service")
    local_key = bearer(await make_key(Scope.admin, person=local))
    async with api(db, approval_required_above=0) as client:
        campaign = (
            await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        ).json()["id"]
        turned = await client.patch(f"/v1/people/{local}", json={"kind": "human"}, headers=author)
        assert turned.status_code == 200, turned.text
        assert "local admin" not in (await _approval(client, campaign, author))["may_approve"]
        refused = await client.post(f"/v1/campaigns/{campaign}/approve", headers=local_key)
        assert refused.status_code == 403, refused.text
        assert "local admin was made a human by Author" in refused.json()["detail"]

        # Turned human by someone who wrote nothing of it, it approves.
        other = bearer(await make_key(Scope.admin, person=await make_person("Other admin")))
        for kind in ("service", "human"):
            changed = await client.patch(f"/v1/people/{local}", json={"kind": kind}, headers=other)
            assert changed.status_code == 200, changed.text
        assert "local admin" in (await _approval(client, campaign, author))["may_approve"]
        approved = await client.post(f"/v1/campaigns/{campaign}/approve", headers=local_key)
        assert approved.status_code == 200, approved.text


async def test_a_slack_user_rebound_after_the_press_approves_nothing(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    """The person was found by the Slack user who pressed; by the time the approval is
    given the binding may have moved (or been cleared): the approval is refused."""
    author = bearer(await make_key(Scope.admin, person=await make_person("Author")))
    bea = await make_person("Bea", slack_user_id="UBEA")
    await make_key(Scope.campaigns_approve, person=bea)
    async with api(db, approval_required_above=0) as client:
        campaign = uuid.UUID(
            (await client.post("/v1/campaigns", json=campaign_body(), headers=author)).json()["id"]
        )
    async with unit_of_work(db.sessionmaker) as session:
        pressed = await people.slack_principal(session, await people.get(session, bea))
    assert pressed.slack_user_id == "UBEA"
    for moved in (None, "UOTHER"):
        async with unit_of_work(db.sessionmaker) as session:
            await people.update(session, SYSTEM, bea, PersonPatch(slack_user_id=moved))
        with pytest.raises(Problem) as refused:
            async with unit_of_work(db.sessionmaker) as session:
                await approval.approve(session, db.settings, pressed, campaign, comment=None)
        assert refused.value.status == 403
        assert "Bea's Slack user changed since the approval was asked for" in refused.value.detail
