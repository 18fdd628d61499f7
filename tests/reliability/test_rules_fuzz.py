"""Segment rules under hostile input, end to end.

`tests/audiences` proves the parser and the compiler on their own (a fixed list of hostile
strings is only ever bound; arbitrary trees are refused or read exactly). Here hypothesis
generates the hostile strings, attribute keys included, and the malformed trees go through
the HTTP API: each must be a 422 problem naming every bad node by its path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import asyncpg

from app.audiences.rules import RuleErrors, compile_rules, parse_rules
from app.auth.models import Scope
from app.db.types import utcnow
from app.ops.nul_guard import nul_fields
from tests.audiences.test_rules_parse import _mutate, json_ish
from tests.audiences.test_rules_sql import rule_trees
from tests.conftest import KeyMaker, bearer

pytestmark = pytest.mark.reliability

DIALECTS = (asyncpg.dialect(), sqlite.dialect())  # type: ignore[no-untyped-call]
# A marker no SQL keyword or identifier contains, so finding it in the SQL text can only
# mean the value was pasted in.
MARK = "Zq7"
_sql_noise = st.sampled_from(
    ["'", '"', ";", "--", "/*", "*/", "\\", "%", "_", "$1", "?", ":p", "\x00", " OR 1=1", ")", "("]
)
hostile = st.lists(st.one_of(_sql_noise, st.text(max_size=6)), max_size=6).map(
    lambda parts: MARK + "".join(parts) + MARK
)
_key_noise = st.text(alphabet="abcXYZ019_.-", max_size=20)


def _conditions(value: str, key: str) -> list[dict[str, Any]]:
    return [
        {"field": "user_id", "op": "eq", "value": value},
        {"field": "user_id", "op": "in", "value": [value, "u1"]},
        {"field": "tags", "op": "contains", "value": value},
        {"field": "tags", "op": "contains_none", "value": [value]},
        {"field": f"attributes.{key}", "op": "eq", "value": value},
        {"field": f"attributes.{key}", "op": "gte", "value": value},
        {"field": f"attributes.{key}", "op": "in", "value": [value, 3]},
        {"field": f"attributes.{key}", "op": "exists", "value": True},
    ]


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(hostile, _key_noise.map(lambda k: MARK + k))
def test_hostile_values_and_keys_are_only_ever_bound(value: str, key: str) -> None:
    raw = {"any": _conditions(value, key)}
    try:
        rule = parse_rules(raw)
    except RuleErrors:
        # Refused before any SQL exists (a NUL or an over-long value, say): also safe.
        assume(False)
        raise
    where = compile_rules(rule, now=utcnow())
    for dialect in DIALECTS:
        compiled = where.compile(dialect=dialect)
        assert MARK not in str(compiled), (dialect.name, str(compiled))
        bound = repr(list(compiled.params.values()))
        assert MARK in bound, "the value must travel as a bound parameter"


def _collect(strategy_test: Callable[[list[Any]], Callable[[], None]]) -> list[Any]:
    found: list[Any] = []
    strategy_test(found)()
    return found


def _arbitrary(found: list[Any]) -> Callable[[], None]:
    @settings(
        max_examples=120,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(json_ish)
    def collect(raw: Any) -> None:
        found.append(raw)

    return collect


def _damaged(found: list[Any]) -> Callable[[], None]:
    @settings(
        max_examples=120,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(rule_trees, st.data())
    def collect(raw: dict[str, Any], data: st.DataObject) -> None:
        found.append(_mutate(raw, data))

    return collect


def _refused_paths(raw: Any) -> list[str] | None:
    """The paths the parser names for a malformed tree that JSON can carry; None otherwise."""
    try:
        json.dumps(raw, allow_nan=False)
    except ValueError:
        return None
    try:
        parse_rules(raw)
    except RuleErrors as exc:
        return [e.path for e in exc.errors]
    return None


async def test_every_malformed_tree_is_a_422_naming_its_nodes(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_read))
    malformed = [
        (raw, paths)
        for raw in _collect(_arbitrary) + _collect(_damaged)
        if (paths := _refused_paths(raw)) is not None
    ]
    assert len(malformed) >= 100, "the generators should mostly produce malformed trees"
    for i, (raw, parser_paths) in enumerate(malformed):
        body = {"name": f"fuzz {i}", "rules": raw}
        # A NUL character (which no text column holds) is refused before the rules are
        # parsed, naming where it is; every other malformed tree is named by the parser.
        paths = nul_fields(body) or parser_paths
        answer = await client.post("/v1/segments", json=body, headers=headers)
        assert answer.status_code == 422, (raw, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        fields = [e["field"] for e in answer.json()["errors"]]
        assert fields == paths, (raw, fields)
        assert all(f == "rules" or f.startswith(("rules.", "rules[")) for f in fields)
    listed = await client.get("/v1/segments", headers=headers)
    assert listed.status_code == 200
    assert listed.json() == [], "a refused tree must never be stored"
    print(f"\nrules fuzz: {len(malformed)} malformed trees, each a 422 naming its nodes")
