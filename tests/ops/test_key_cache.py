"""Proven API keys remembered in the process (app.auth.key_cache), and the bound on
revocation: a revoked key is refused from `key_revocation_seconds` after the revocation, in
every API process, and at once in the process that revoked it."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text

from app.auth import repository as auth_repo
from app.auth import service as auth_service
from app.auth.key_cache import MAX_AGE_SECONDS, KeyCache
from app.auth.models import Scope
from app.auth.principal import Principal
from app.db.session import unit_of_work
from app.runtime import Runtime
from tests.conftest import TEST_PEPPER, KeyMaker, bearer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Reads:
    """The cache's two ways to the database, counted: the key and the watermark."""

    def __init__(self, db: Runtime) -> None:
        self.db = db
        self.keys = 0
        self.watermarks = 0

    async def watermark(self) -> tuple[object, ...]:
        self.watermarks += 1
        async with self.db.sessionmaker() as session:
            return await auth_repo.watermark(session)

    def loader(self, raw: str):  # type: ignore[no-untyped-def]
        async def load() -> Principal | None:
            self.keys += 1
            async with unit_of_work(self.db.sessionmaker) as session:
                return await auth_service.authenticate(session, self.db.settings, raw)

        return load


async def _revoke_elsewhere(db: Runtime, raw: str) -> None:
    """A revocation as another process makes it: committed, and no ORM event here."""
    prefix = raw.split("_")[1]
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_key SET revoked_at = CURRENT_TIMESTAMP WHERE prefix = :p"),
            {"p": prefix},
        )


async def test_a_proven_key_is_served_from_memory_until_the_watermark_moves(
    db: Runtime, make_key: KeyMaker
) -> None:
    raw = await make_key(Scope.devices_read)
    reads, clock = Reads(db), Clock()
    cache = KeyCache(TEST_PEPPER, reads.watermark, revocation_seconds=1.0, clock=clock)
    first = await cache.authenticate(raw, reads.loader(raw))
    assert first is not None and Scope.devices_read in first.scopes
    for _ in range(5):
        assert await cache.authenticate(raw, reads.loader(raw)) == first
    assert (reads.keys, reads.watermarks, cache.hits) == (1, 1, 5)

    await _revoke_elsewhere(db, raw)
    # Within the bound the process has not looked yet: this is what the bound allows.
    clock.now += 0.999
    assert await cache.authenticate(raw, reads.loader(raw)) == first
    # From the bound on, it looks, sees the watermark move, and reads the key: refused.
    clock.now += 0.001
    assert await cache.authenticate(raw, reads.loader(raw)) is None
    assert (reads.keys, reads.watermarks) == (2, 2)
    # Refusals are never remembered.
    assert await cache.authenticate(raw, reads.loader(raw)) is None
    assert reads.keys == 3


async def test_a_new_key_elsewhere_forgets_nothing_it_should_not_keep(
    db: Runtime, make_key: KeyMaker
) -> None:
    """Any change of the table makes every key be read again (it is cheap, and it keeps
    the rule simple); an unchanged table keeps serving from memory."""
    raw = await make_key(Scope.devices_read)
    reads, clock = Reads(db), Clock()
    cache = KeyCache(TEST_PEPPER, reads.watermark, revocation_seconds=1.0, clock=clock)
    await cache.authenticate(raw, reads.loader(raw))
    clock.now += 5
    assert await cache.authenticate(raw, reads.loader(raw)) is not None
    assert (reads.keys, reads.watermarks) == (1, 2)
    await make_key(Scope.campaigns_read)
    clock.now += 5
    assert await cache.authenticate(raw, reads.loader(raw)) is not None
    assert (reads.keys, reads.watermarks) == (2, 3)


async def test_entries_expire_and_malformed_keys_always_read(
    db: Runtime, make_key: KeyMaker
) -> None:
    raw = await make_key(Scope.devices_read)
    reads, clock = Reads(db), Clock()
    cache = KeyCache(TEST_PEPPER, reads.watermark, revocation_seconds=60.0, clock=clock)
    await cache.authenticate(raw, reads.loader(raw))
    clock.now += MAX_AGE_SECONDS
    await cache.authenticate(raw, reads.loader(raw))
    assert reads.keys == 2
    for bad in ("nonsense", raw + "x", raw[:-1]):
        assert await cache.authenticate(bad, reads.loader(bad)) is None
    assert reads.keys == 5


async def test_an_unreadable_watermark_uses_nothing_from_memory(
    db: Runtime, make_key: KeyMaker
) -> None:
    raw = await make_key(Scope.devices_read)
    reads, clock = Reads(db), Clock()
    failing = False

    async def watermark() -> tuple[object, ...]:
        if failing:
            raise ConnectionError("database unreachable")
        return await reads.watermark()

    cache = KeyCache(TEST_PEPPER, watermark, revocation_seconds=1.0, clock=clock)
    await cache.authenticate(raw, reads.loader(raw))
    failing = True
    clock.now += 1
    assert await cache.authenticate(raw, reads.loader(raw)) is not None
    assert reads.keys == 2, "read from the database, not memory"


async def test_off_reads_every_time(db: Runtime, make_key: KeyMaker) -> None:
    raw = await make_key(Scope.devices_read)
    reads = Reads(db)
    cache = KeyCache(TEST_PEPPER, reads.watermark, revocation_seconds=0)
    for _ in range(3):
        assert await cache.authenticate(raw, reads.loader(raw)) is not None
    assert (reads.keys, reads.watermarks, cache.hits) == (3, 0, 0)


async def test_through_the_api_the_revoking_process_refuses_at_once(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    admin = bearer(await make_key(Scope.admin, name="admin"))
    raw = await make_key(Scope.devices_read, name="phone app")
    for _ in range(3):
        assert (await client.get("/v1/devices", headers=bearer(raw))).status_code == 200
    listed = (await client.get("/v1/keys", headers=admin)).json()
    key_id = next(k["id"] for k in listed if k["name"] == "phone app")
    revoked = await client.request(
        "DELETE", f"/v1/keys/{key_id}", json={"reason": "leaked"}, headers=admin
    )
    assert revoked.status_code == 200, revoked.text
    answer = await client.get("/v1/devices", headers=bearer(raw))
    assert answer.status_code == 401
    assert "unknown or revoked" in answer.text


async def test_a_wrong_key_with_a_known_prefix_is_refused_though_its_owner_is_cached(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    raw = await make_key(Scope.devices_read)
    assert (await client.get("/v1/devices", headers=bearer(raw))).status_code == 200
    forged = raw[: raw.rindex("_") + 1] + uuid.uuid4().hex
    assert (await client.get("/v1/devices", headers=bearer(forged))).status_code == 401
