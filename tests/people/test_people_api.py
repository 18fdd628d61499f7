"""People: the admin API, its validation, and keys that must belong to one."""

from __future__ import annotations

import uuid

import httpx

from app.auth.models import Scope
from tests.conftest import KeyMaker, bearer


async def test_people_are_created_listed_and_changed_by_an_admin(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    admin = bearer(await make_key(Scope.admin))
    created = await client.post(
        "/v1/people",
        json={
            "name": "Anna Nowak",
            "kind": "human",
            "email": "anna@bank.pl",
            "slack_user_id": "U01ANNA",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    anna = created.json()
    assert (anna["name"], anna["kind"], anna["slack_user_id"], anna["scopes"]) == (
        "Anna Nowak",
        "human",
        "U01ANNA",
        [],
    )
    key = await client.post(
        "/v1/keys",
        json={"name": "anna laptop", "scopes": ["campaigns:approve"], "person_id": anna["id"]},
        headers=admin,
    )
    assert key.status_code == 201, key.text
    assert key.json()["person_id"] == anna["id"]
    listed = (await client.get("/v1/people", headers=admin)).json()
    assert next(p for p in listed if p["id"] == anna["id"])["scopes"] == ["campaigns:approve"]

    patched = await client.patch(
        f"/v1/people/{anna['id']}", json={"slack_user_id": None, "kind": "service"}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["slack_user_id"], patched.json()["kind"]) == (None, "service")
    events = (await client.get("/v1/audit?subject_type=person", headers=admin)).json()["items"]
    assert [e["action"] for e in events] == ["person.updated", "person.created"]
    assert events[0]["before"]["slack_user_id"] == "U01ANNA"

    marketing = bearer(await make_key(Scope.campaigns_write))
    assert (await client.get("/v1/people", headers=marketing)).status_code == 403
    assert (
        await client.post("/v1/people", json={"name": "x", "kind": "human"}, headers=marketing)
    ).status_code == 403


async def test_bad_people_are_refused_naming_the_field(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    admin = bearer(await make_key(Scope.admin))
    for body, field in (
        ({"name": "", "kind": "human"}, "name"),
        ({"name": "A", "kind": "robot"}, "kind"),
        ({"name": "A", "kind": "human", "email": "not-an-email"}, "email"),
        ({"name": "A", "kind": "human", "slack_user_id": "anna"}, "slack_user_id"),
        ({"name": "A", "kind": "human", "role": "boss"}, "role"),
    ):
        answer = await client.post("/v1/people", json=body, headers=admin)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["errors"][0]["field"] == field, answer.text

    first = await client.post(
        "/v1/people", json={"name": "Ops", "kind": "human", "slack_user_id": "U0OPS"}, headers=admin
    )
    assert first.status_code == 201
    same_name = await client.post(
        "/v1/people", json={"name": "Ops", "kind": "service"}, headers=admin
    )
    assert same_name.status_code == 409, same_name.text
    assert same_name.json()["errors"][0]["field"] == "name"
    same_slack = await client.post(
        "/v1/people",
        json={"name": "Other", "kind": "human", "slack_user_id": "U0OPS"},
        headers=admin,
    )
    assert same_slack.status_code == 409
    assert same_slack.json()["errors"][0]["field"] == "slack_user_id"
    other = (
        await client.post("/v1/people", json={"name": "Other", "kind": "human"}, headers=admin)
    ).json()
    renamed = await client.patch(f"/v1/people/{other['id']}", json={"name": "Ops"}, headers=admin)
    assert renamed.status_code == 409
    nulled = await client.patch(f"/v1/people/{other['id']}", json={"name": None}, headers=admin)
    assert nulled.status_code == 422
    missing = await client.get(f"/v1/people/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404


async def test_a_key_needs_a_person_that_exists(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    admin = bearer(await make_key(Scope.admin))
    without = await client.post("/v1/keys", json={"name": "k", "scopes": ["kill"]}, headers=admin)
    assert without.status_code == 422
    assert without.json()["errors"][0]["field"] == "person_id"
    unknown = await client.post(
        "/v1/keys",
        json={"name": "k", "scopes": ["kill"], "person_id": str(uuid.uuid4())},
        headers=admin,
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "person_id"
