"""Input PostgreSQL cannot store, or numbers beyond its types, is a 422 naming the field,
never a 500 (both were 500s on PostgreSQL before), on every road in: JSON bodies, query
strings, cursors and the NDJSON import."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import pagination
from app.auth.models import Scope
from app.errors import Problem
from app.ops.nul_guard import has_nul_escape, nul_fields
from tests.conftest import KeyMaker, bearer

NUL = "\x00"


@given(
    st.recursive(
        st.text() | st.integers(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=10,
    )
)
def test_the_escape_is_found_exactly_when_a_nul_is_in_the_value(value: object) -> None:
    assert has_nul_escape(json.dumps(value).encode()) == bool(nul_fields(value))


def test_escaped_backslashes_are_not_a_nul() -> None:
    assert not has_nul_escape(json.dumps({"a": "\\u0000"}).encode())
    assert has_nul_escape(json.dumps({"a": "\\" + NUL}).encode())
    assert nul_fields({"a": [1, {"b": f"x{NUL}"}], f"k{NUL}": 1}) == ["a.1.b", "k\\u0000"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/devices", {"token": f"a{NUL}", "platform": "android"}, "token"),
        ("POST", "/v1/devices", {"token": "t", "platform": "android", "tags": [NUL]}, "tags.0"),
        (
            "POST",
            "/v1/devices",
            {"token": "t", "platform": "android", "attributes": {"k": {"n": NUL}}},
            "attributes.k.n",
        ),
        ("POST", "/v1/segments", {"name": NUL, "rules": {"everyone": True}}, "name"),
        ("POST", "/v1/keys", {"name": f"x{NUL}", "scopes": ["kill"]}, "name"),
        ("POST", "/v1/kill-switch", {"reason": NUL}, "reason"),
        (
            "POST",
            "/v1/audience/estimate",
            {"rules": {"field": "user_id", "op": "eq", "value": NUL}},
            "rules.value",
        ),
        ("GET", "/v1/audit?actor=a%00b", None, "query.actor"),
        ("GET", "/v1/devices?user_id=%00", None, "query.user_id"),
        ("GET", "/v1/audit?cursor=OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", None, "query.cursor"),
        ("GET", "/v1/audit?cursor=LTE", None, "query.cursor"),  # -1
    ],
)
async def test_unstorable_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    method: str,
    path: str,
    body: object,
    field: str,
) -> None:
    answer = await client.request(
        method, path, json=body, headers=bearer(await make_key(Scope.admin))
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in answer.json()["errors"]]


async def test_the_import_rejects_the_line_and_keeps_the_rest(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    lines = [
        {"token": "fine-1", "platform": "android"},
        {"token": "bad", "platform": "android", "tags": ["a", f"b{NUL}"]},
        {"token": "fine-2", "platform": "android"},
    ]
    answer = await client.post(
        "/v1/devices/import",
        content="".join(json.dumps(line) + "\n" for line in lines),
        headers={
            **bearer(await make_key(Scope.devices_write)),
            "content-type": "application/x-ndjson",
        },
    )
    assert answer.status_code == 200
    assert answer.json()["created"] == 2
    [rejected] = answer.json()["rejected"]
    assert rejected["line"] == 2 and rejected["error"].startswith("tags.1: contains a NUL")


def test_cursors_outside_bigint_are_refused() -> None:
    for value in (0, -1, 2**63, 10**30):
        with pytest.raises(Problem, match="cursor"):
            pagination.decode_int(pagination.encode(value))
    assert pagination.decode_int(pagination.encode(2**63 - 1)) == 2**63 - 1
