"""Compiled rules select exactly the devices the Python evaluator accepts, on both databases.

Runs against the suite's PostgreSQL (schema ``rules_test``; skipped with a reason when the suite
has none) and a SQLite file, each holding the same few hundred varied devices, including
data no registration would produce (non-ASCII locales, tags that are not a list, attributes
that are not an object) so that the two sides must agree on the edges too.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table, func, inspect, select, text
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import ColumnElement

from app.audiences.rules import Rule, compile_rules, evaluate, parse_rules
from app.audiences.versions import version_key
from app.devices.models import Device
from app.settings import normalise_database_url

# The suite's PostgreSQL when it has one (CI), in a schema of these tests' own, so the
# device table created here never touches the migrated one.
PG_URL = normalise_database_url(os.environ.get("WAVECAST_TEST_DATABASE_URL", ""))
PG_SCHEMA = "rules_test"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DEVICES = 320
INJECTION = "'; DROP TABLE device; --"

DEVICE_TABLE: Table = inspect(Device).local_table  # type: ignore[assignment]

# Pools shared by the data and the rule strategy, so that rules hit real rows.
LOCALES = [None, "pl", "pl-PL", "pl_pl", "PL-pl", "pli", "en", "en-GB", "en-gb-oed", "de-DE"]
ODD_LOCALES = ["\u212ak", "Kk", "\u0130t", "pl-\u00e9"]  # Kelvin sign, dotted I: case folding traps
ZONES = [None, "Europe/Warsaw", "UTC", "America/New_York", "Asia/Tokyo"]
VERSIONS = [None, "1", "1.0", "1.0.0-beta", "1.2.3", "1.10", "1.9.9", "2.0.0+b1", "10.0"]
ODD_VERSIONS: list[str | None] = ["5.12.1", "5.12.1.7", "not-a-version", "1000000.1"]
TAGS = ["vip", "beta", "churn", "pl", "a b", "VIP", INJECTION]
ATTRIBUTE_KEYS = ["plan", "score", "beta", "a.b", "x-y"]
STRINGS = ["gold", "silver", "Gold", "", "5", "zeta", "\u0105", "O'Brien", INJECTION]
NUMBERS: list[int | float] = [0, 1, 5, -3, 0.5, 2.25, -1.5, 5.0, 10**20, 2**53 + 1]
USER_IDS = [None, "u1", "u2", "u3", INJECTION]

_rng = random.Random(20250601)
DEVICE_IDS = [uuid.UUID(int=_rng.getrandbits(128), version=4) for _ in range(DEVICES)]


def _attribute_value(rng: random.Random) -> Any:
    pool: list[Any] = [*STRINGS, *NUMBERS, True, False, None]
    return rng.choice(pool)


def _device(rng: random.Random, index: int) -> dict[str, Any]:
    version = rng.choice(VERSIONS + ODD_VERSIONS if index % 7 == 0 else VERSIONS)
    tags: Any = rng.sample(TAGS, rng.randint(0, 3))
    if index % 41 == 0:
        # Not a list of strings: must count as "no tags" (every tags condition false).
        tags = rng.choice([{"vip": 1}, "vip", 7])
    elif index % 37 == 0:
        tags = [1, "1", None, ["vip"], "beta"]
    attributes: Any = {key: _attribute_value(rng) for key in ATTRIBUTE_KEYS if rng.random() < 0.6}
    if index % 53 == 0:
        attributes = ["plan", "gold"]
    locale = rng.choice(LOCALES)
    if index % 11 == 0:
        locale = ODD_LOCALES[index // 11 % len(ODD_LOCALES)]
    last_seen = NOW - timedelta(days=rng.randint(0, 400), seconds=rng.randint(0, 86_399))
    if index % 29 == 0:
        last_seen = NOW - timedelta(days=rng.choice([1, 7, 30, 90]))  # exactly on a boundary
    return {
        "id": DEVICE_IDS[index],
        "token": f"token-{index}",
        "platform": rng.choice(["ios", "android"]),
        "user_id": rng.choice(USER_IDS),
        "locale": locale,
        "timezone": rng.choice(ZONES),
        "app_version": version,
        "app_version_key": version_key(version) if version is not None else None,
        "tags": tags,
        "attributes": attributes,
        "apns_environment": None,
        "is_test_device": rng.random() < 0.2,
        "status": "active",
        "bucket": index,
        "last_seen_at": last_seen,
        "created_at": NOW,
        "updated_at": NOW,
    }


ROWS = [_device(random.Random(index), index) for index in range(DEVICES)]


@dataclass
class Database:
    name: str
    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine
    devices: list[dict[str, Any]]

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def matching(self, where: ColumnElement[bool]) -> set[uuid.UUID]:
        async def query() -> set[uuid.UUID]:
            async with self.engine.connect() as conn:
                result = await conn.execute(select(DEVICE_TABLE.c.id).where(where))
                return {row[0] for row in result}

        found: set[uuid.UUID] = self.run(query())
        return found

    def expected(self, rule: Rule) -> set[uuid.UUID]:
        return {device["id"] for device in self.devices if evaluate(rule, device, now=NOW)}

    def count(self) -> int:
        async def query() -> int:
            async with self.engine.connect() as conn:
                return int(
                    (
                        await conn.execute(select(func.count()).select_from(DEVICE_TABLE))
                    ).scalar_one()
                )

        total: int = self.run(query())
        return total


async def _prepare(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: DEVICE_TABLE.drop(sync, checkfirst=True))
        await conn.run_sync(lambda sync: DEVICE_TABLE.create(sync))
        await conn.execute(DEVICE_TABLE.insert(), ROWS)
    async with engine.connect() as conn:
        # The evaluator sees rows as the database gives them back, not as they were sent.
        result = await conn.execute(select(DEVICE_TABLE))
        return [dict(row._mapping) for row in result]


async def _create_schema() -> None:
    engine = create_async_engine(PG_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
    finally:
        await engine.dispose()


async def _reachable(engine: AsyncEngine) -> str | None:
    try:
        async with asyncio.timeout(5), engine.connect():
            return None
    except Exception as exc:  # any failure to connect means "skip", with the reason
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    # A private loop: the engine, its pool and every query live on it, apart from the
    # suite's own loop, and the hypothesis tests below stay plain synchronous functions.
    loop = asyncio.new_event_loop()
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("rules") / "rules.db"
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    else:
        if not PG_URL.startswith("postgresql"):
            loop.close()
            pytest.skip("no PostgreSQL given (WAVECAST_TEST_DATABASE_URL is not set)")
        loop.run_until_complete(_create_schema())
        engine = create_async_engine(
            PG_URL, connect_args={"server_settings": {"search_path": PG_SCHEMA}}
        )
        problem = loop.run_until_complete(_reachable(engine))
        if problem is not None:
            loop.run_until_complete(engine.dispose())
            loop.close()
            pytest.skip(f"PostgreSQL at {PG_URL} is not reachable ({problem})")
    try:
        devices = loop.run_until_complete(_prepare(engine))
        yield Database(request.param, loop, engine, devices)
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()


# --------------------------------------------------------------------------------------------
# Rule trees built from the data pools


def _listed(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(values, min_size=1, max_size=4)


def _cond(field: str, op: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return value.map(lambda v: {"field": field, "op": op, "value": v})


def _field_conditions(
    field: str, scalar_ops: list[str], values: st.SearchStrategy[Any], list_op: str | None = "in"
) -> st.SearchStrategy[dict[str, Any]]:
    options = [_cond(field, op, values) for op in scalar_ops]
    if list_op is not None:
        options.append(_cond(field, list_op, _listed(values)))
    return st.one_of(options)


_rule_locales = st.sampled_from(
    ["pl", "PL", "pl-PL", "pl_PL", "en", "en-GB", "en-gb", "de", "kk", "it", "pli"]
)
_rule_versions = st.sampled_from(
    ["1", "1.0.0", "1.0.0-rc.1", "1.2", "1.10", "1.9.9", "2", "5.12.1", "10"]
)
_tags = st.sampled_from([*TAGS, "nobody"])
_strings = st.sampled_from([*STRINGS, "m", "a"])
_numbers = st.sampled_from([*NUMBERS, 2, 100, -0.5])
_scalars = st.one_of(_strings, _numbers, st.booleans())
_ordered = st.one_of(_strings, _numbers)
_attribute = st.sampled_from([*ATTRIBUTE_KEYS, "missing"]).map(lambda key: f"attributes.{key}")
_device_ids = st.one_of(st.sampled_from(DEVICE_IDS), st.uuids()).map(str)

_attribute_conditions = st.one_of(
    st.tuples(_attribute, st.sampled_from(["eq", "ne"]), _scalars),
    st.tuples(_attribute, st.sampled_from(["lt", "lte", "gt", "gte"]), _ordered),
    st.tuples(_attribute, st.just("in"), _listed(_scalars)),
    st.tuples(_attribute, st.just("exists"), st.booleans()),
).map(lambda t: {"field": t[0], "op": t[1], "value": t[2]})

conditions: st.SearchStrategy[dict[str, Any]] = st.one_of(
    _field_conditions("platform", ["eq", "ne"], st.sampled_from(["ios", "android"])),
    _field_conditions("locale", ["eq", "ne", "starts_with"], _rule_locales),
    _field_conditions("timezone", ["eq", "ne"], st.sampled_from([z for z in ZONES if z])),
    _field_conditions("app_version", ["eq", "ne", "lt", "lte", "gt", "gte"], _rule_versions),
    _cond("tags", "contains", _tags),
    *(
        _cond("tags", op, _listed(_tags))
        for op in ("contains_any", "contains_all", "contains_none")
    ),
    _attribute_conditions,
    _field_conditions(
        "last_seen",
        ["within_days", "not_within_days"],
        st.one_of(st.sampled_from([1, 7, 30, 90, 365, 3650]), st.integers(1, 3650)),
        list_op=None,
    ),
    _field_conditions("user_id", ["eq"], st.sampled_from([u for u in USER_IDS if u] + ["u9"])),
    _cond("is_test_device", "eq", st.booleans()),
    _cond("device_id", "in", _listed(_device_ids)),
)

rule_trees: st.SearchStrategy[dict[str, Any]] = st.recursive(
    conditions,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=4).map(lambda items: {"all": items}),
        st.lists(children, min_size=1, max_size=4).map(lambda items: {"any": items}),
        children.map(lambda child: {"not": child}),
    ),
    max_leaves=10,
)

DIALECT_RUN = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --------------------------------------------------------------------------------------------
# SQL agrees with Python


@DIALECT_RUN
@given(rule_trees)
def test_sql_selects_what_evaluate_accepts(db: Database, raw: dict[str, Any]) -> None:
    rule = parse_rules(raw)
    assert db.matching(compile_rules(rule, now=NOW)) == db.expected(rule)


@pytest.mark.parametrize(
    "raw",
    [
        {"field": "locale", "op": "starts_with", "value": "pl"},
        {"field": "locale", "op": "eq", "value": "PL_pl"},
        {"field": "locale", "op": "ne", "value": "pl"},
        {"not": {"field": "locale", "op": "eq", "value": "pl"}},
        {"field": "locale", "op": "eq", "value": "kk"},
        {"field": "app_version", "op": "gte", "value": "1.9.10"},
        {"field": "app_version", "op": "eq", "value": "1"},
        {"field": "app_version", "op": "in", "value": ["1.10", "10"]},
        {"field": "tags", "op": "contains_none", "value": ["vip"]},
        {"field": "tags", "op": "contains_all", "value": ["vip", "beta"]},
        {"field": "attributes.score", "op": "gt", "value": 1},
        {"field": "attributes.score", "op": "eq", "value": 9007199254740992},
        {"field": "attributes.plan", "op": "lt", "value": "m"},
        {"field": "attributes.plan", "op": "ne", "value": "gold"},
        {"field": "attributes.beta", "op": "eq", "value": True},
        {"field": "attributes.a.b", "op": "in", "value": ["gold", 5, False]},
        {"field": "attributes.x-y", "op": "exists", "value": True},
        {"field": "attributes.x-y", "op": "exists", "value": False},
        {"field": "last_seen", "op": "within_days", "value": 30},
        {"field": "last_seen", "op": "not_within_days", "value": 7},
        {"field": "user_id", "op": "in", "value": ["u1", "u3"]},
        {"field": "is_test_device", "op": "eq", "value": True},
        {"field": "device_id", "op": "in", "value": [str(DEVICE_IDS[3]), str(DEVICE_IDS[4])]},
    ],
)
def test_each_operator_selects_some_but_not_all(db: Database, raw: dict[str, Any]) -> None:
    # Guards the property test against vacuity: every operator here really splits the rows.
    rule = parse_rules(raw)
    expected = db.expected(rule)
    assert 0 < len(expected) < DEVICES
    assert db.matching(compile_rules(rule, now=NOW)) == expected


def test_locale_folds_ascii_only(db: Database) -> None:
    # "\u212ak" (Kelvin sign) lowers to "kk" under Unicode rules; SQLite's lower() and
    # PostgreSQL's under COLLATE "C" leave it, so the evaluator must leave it too.
    rule = parse_rules({"field": "locale", "op": "eq", "value": "kk"})
    kelvin = {d["id"] for d in db.devices if d["locale"] == "\u212ak"}
    plain = {d["id"] for d in db.devices if d["locale"] == "Kk"}
    assert kelvin
    assert plain
    assert db.matching(compile_rules(rule, now=NOW)) == db.expected(rule) == plain


def test_everyone_selects_every_device(db: Database) -> None:
    rule = parse_rules({"everyone": True})
    assert db.matching(compile_rules(rule, now=NOW)) == set(DEVICE_IDS)


def test_statement_cache_rebinds_values(db: Database) -> None:
    # Same shape, different values: the cached compiled statement must take the new ones.
    for user_id in ["u1", "u2", "u1", "u3"]:
        for tag in ["vip", "beta"]:
            rule = parse_rules(
                {
                    "all": [
                        {"field": "user_id", "op": "eq", "value": user_id},
                        {"field": "tags", "op": "contains_any", "value": [tag, "churn"]},
                        {"field": "attributes.plan", "op": "in", "value": [user_id, "gold"]},
                    ]
                }
            )
            assert db.matching(compile_rules(rule, now=NOW)) == db.expected(rule)


def test_a_long_list_is_one_parameter(db: Database) -> None:
    # Three lists of 10,000 would pass asyncpg's 32,767-argument limit as expanded IN lists.
    many = [str(uuid.UUID(int=n)) for n in range(9_998)] + [str(DEVICE_IDS[0]), str(DEVICE_IDS[1])]
    users = [f"user-{n}" for n in range(9_999)] + ["u1"]
    rule = parse_rules(
        {
            "any": [
                {"field": "device_id", "op": "in", "value": many},
                {"field": "user_id", "op": "in", "value": users},
                {
                    "field": "tags",
                    "op": "contains_any",
                    "value": [f"t{n}" for n in range(9_999)] + ["vip"],
                },
            ]
        }
    )
    assert db.matching(compile_rules(rule, now=NOW)) == db.expected(rule)


# --------------------------------------------------------------------------------------------
# Bound parameters only


DIALECTS = (asyncpg.dialect(), sqlite.dialect())  # type: ignore[no-untyped-call]

HOSTILE = [
    INJECTION,
    "x' OR '1'='1",
    'a"; DELETE FROM device; --',
    "back\\slash % _ $1 ? :name",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_user_values_are_only_ever_bound(db: Database, value: str) -> None:
    rule = parse_rules(
        {
            "any": [
                {"field": "user_id", "op": "eq", "value": value},
                {"field": "user_id", "op": "in", "value": [value, "u1"]},
                {"field": "attributes.plan", "op": "eq", "value": value},
                {"field": "attributes.plan", "op": "gte", "value": value},
                {"field": "tags", "op": "contains", "value": value},
                {"not": {"field": "tags", "op": "contains_all", "value": [value, "vip"]}},
            ]
        }
    )
    where = compile_rules(rule, now=NOW)
    for dialect in DIALECTS:
        sql = str(where.compile(dialect=dialect))
        assert value not in sql
        assert "DROP" not in sql
        assert "DELETE" not in sql
    before = db.count()
    assert db.matching(where) == db.expected(rule)
    assert db.count() == before == DEVICES


def test_no_literal_of_a_rule_reaches_the_sql_text() -> None:
    rule = parse_rules(
        {
            "all": [
                {"field": "platform", "op": "eq", "value": "android"},
                {"field": "locale", "op": "starts_with", "value": "sv-FI"},
                {"field": "timezone", "op": "eq", "value": "Europe/Warsaw"},
                {"field": "app_version", "op": "gte", "value": "5.12.1"},
                {"field": "attributes.plan", "op": "eq", "value": "platinum"},
                {"field": "attributes.score", "op": "gt", "value": 12345},
                {"field": "last_seen", "op": "within_days", "value": 77},
                {"field": "user_id", "op": "eq", "value": "user-abc"},
                {"field": "device_id", "op": "in", "value": [str(DEVICE_IDS[0])]},
            ]
        }
    )
    where = compile_rules(rule, now=NOW)
    for dialect in DIALECTS:
        sql = str(where.compile(dialect=dialect))
        for literal in [
            "android",
            "sv",
            "Warsaw",
            "000005",
            "platinum",
            "12345",
            "77",
            "user-abc",
            "plan",
            "score",
            str(DEVICE_IDS[0]),
            DEVICE_IDS[0].hex,
            "'",
        ]:
            assert literal not in sql, (dialect.name, literal)


def test_other_dialects_are_refused() -> None:
    where = compile_rules(parse_rules({"field": "tags", "op": "contains", "value": "vip"}), now=NOW)
    with pytest.raises(CompileError, match="PostgreSQL and SQLite"):
        where.compile(dialect=mysql.dialect())


def test_now_must_be_aware() -> None:
    rule = parse_rules({"field": "last_seen", "op": "within_days", "value": 7})
    with pytest.raises(ValueError, match="timezone-aware"):
        compile_rules(rule, now=datetime(2025, 1, 1))  # noqa: DTZ001
