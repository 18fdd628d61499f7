from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text

from app.auth import keys
from app.auth.models import Scope
from app.main import create_app
from app.ops.routes import api_routes, required_scopes
from app.runtime import Runtime
from tests.conftest import KeyMaker, PersonMaker, bearer


def test_key_format_and_hashing() -> None:
    new = keys.generate()
    assert new.raw.startswith(f"wck_{new.prefix}_")
    assert keys.split(new.raw) == new.prefix
    assert len(new.raw.split("_", 2)[2]) >= 43  # 256 bits, base64url
    assert keys.matches(new.raw, keys.digest(new.raw, "p"), "p")
    assert not keys.matches(new.raw, keys.digest(new.raw, "p"), "other pepper")
    assert not keys.matches(new.raw + "x", keys.digest(new.raw, "p"), "p")
    for bad in ("", "wck", "wck__x", "abc_123456789012_x", "wck_short_x", new.raw[:17]):
        assert keys.split(bad) is None
    assert keys.generate().raw != keys.generate().raw


async def test_no_key_bad_key_and_revoked_key_are_401(
    client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker
) -> None:
    assert (await client.get("/v1/devices")).status_code == 401
    answer = await client.get("/v1/devices", headers={"Authorization": "Bearer wck_nope"})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith("Bearer")

    admin = bearer(await make_key(Scope.admin))
    person = str(await make_person("device reader", kind="service"))
    created = await client.post(
        "/v1/keys",
        json={"name": "device reader", "scopes": ["devices:read"], "person_id": person},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    raw = created.json()["key"]
    assert (await client.get("/v1/devices", headers=bearer(raw))).status_code == 200

    tampered = raw[:-2] + ("AA" if not raw.endswith("AA") else "BB")
    assert (await client.get("/v1/devices", headers=bearer(tampered))).status_code == 401

    revoked = await client.request(
        "DELETE", f"/v1/keys/{created.json()['id']}", json={"reason": "leaked"}, headers=admin
    )
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert (await client.get("/v1/devices", headers=bearer(raw))).status_code == 401

    listing = (await client.get("/v1/keys", headers=admin)).json()
    assert all("key" not in k for k in listing)
    assert created.json()["id"] not in {k["id"] for k in listing}
    everything = (await client.get("/v1/keys?include_revoked=true", headers=admin)).json()
    assert created.json()["id"] in {k["id"] for k in everything}

    audit = (await client.get("/v1/audit?subject_type=api_key", headers=admin)).json()["items"]
    actions = [e["action"] for e in audit]
    assert actions.count("api_key.created") == 2
    assert actions[0] == "api_key.revoked"
    assert audit[0]["reason"] == "leaked"


async def test_raw_key_is_nowhere_in_the_database(
    client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker, db: Runtime
) -> None:
    admin = bearer(await make_key(Scope.admin))
    person = str(await make_person())
    raw = (
        await client.post(
            "/v1/keys", json={"name": "k", "scopes": ["kill"], "person_id": person}, headers=admin
        )
    ).json()["key"]
    secret = raw.split("_", 2)[2]
    async with db.engine.connect() as conn:
        for table in ("api_key", "audit_event"):
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            dump = repr(rows)
            assert secret not in dump
            assert raw not in dump


async def test_key_creation_validates_scopes(
    client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker
) -> None:
    admin = bearer(await make_key(Scope.admin))
    person = str(await make_person())
    bad = await client.post(
        "/v1/keys", json={"name": "k", "scopes": ["root"], "person_id": person}, headers=admin
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"].startswith("scopes")
    empty = await client.post(
        "/v1/keys", json={"name": "k", "scopes": [], "person_id": person}, headers=admin
    )
    assert empty.status_code == 422


def _v1_routes() -> list[tuple[str, str, set[Scope]]]:
    app = create_app()
    table = []
    for route in api_routes(app):
        if not route.path.startswith("/v1"):
            continue
        for method in sorted(route.methods or ()):
            table.append((method, route.path, required_scopes(route)))
    return table


ROUTES = _v1_routes()


def test_every_v1_route_demands_exactly_one_scope() -> None:
    assert ROUTES, "no /v1 routes found"
    missing = [(m, p) for m, p, s in ROUTES if len(s) != 1]
    assert missing == [], f"routes without exactly one scope: {missing}"


@pytest.mark.parametrize(
    ("method", "path", "needed"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES]
)
async def test_scope_matrix(
    client: httpx.AsyncClient, make_key: KeyMaker, method: str, path: str, needed: set[Scope]
) -> None:
    url = path
    for name in ("device_id", "key_id", "campaign_id", "segment_id"):
        url = url.replace("{" + name + "}", str(uuid.uuid4()))
    assert (await client.request(method, url)).status_code == 401
    [scope] = needed
    for held in Scope:
        answer = await client.request(method, url, headers=bearer(await make_key(held)))
        allowed = held == scope or held == Scope.admin
        if allowed:
            assert answer.status_code not in (401, 403), (held, answer.text)
        else:
            assert answer.status_code == 403, (held, answer.status_code, answer.text)
