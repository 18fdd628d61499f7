"""Campaign pages, for the API and the form alike: a cursor carries the creation stamp and
the id, so campaigns created in the same instant are neither repeated nor skipped."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import update

from app import pagination
from app.auth.models import Scope
from app.campaigns import service
from app.campaigns.models import Campaign
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body


async def test_campaigns_created_in_one_instant_page_once_each(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_read))
    ids = set()
    for n in range(5):
        created = await client.post(
            "/v1/campaigns", json={**campaign_body(), "name": f"c{n}"}, headers=headers
        )
        assert created.status_code == 201, created.text
        ids.add(created.json()["id"])
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(update(Campaign).values(created_at=utcnow()))
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        async with unit_of_work(db.sessionmaker) as session:
            items, cursor = await service.page_campaigns(
                session, limit=2, cursor=cursor, status=None, kind=None
            )
        seen += [str(i.id) for i in items]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    api: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        answer = (await client.get("/v1/campaigns", params=params, headers=headers)).json()
        api += [i["id"] for i in answer["items"]]
        if not answer["next_cursor"]:
            break
        params["cursor"] = answer["next_cursor"]
    assert api == seen, "the API and the form page the same way"


async def test_a_forged_cursor_is_a_422_naming_it(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.campaigns_read))
    for stamp in (
        "2020-01-01T00:00:00",  # no offset
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59.999999+00:00",  # stored as infinity
    ):
        cursor = pagination.encode(f"{stamp} {uuid.UUID(int=0)}")
        answer = await client.get("/v1/campaigns", params={"cursor": cursor}, headers=headers)
        assert answer.status_code == 422, (stamp, answer.text)
        assert answer.json()["errors"][0]["field"] == "query.cursor", answer.text
