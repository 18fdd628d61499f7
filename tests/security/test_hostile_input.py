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
from app.errors import Problem, problem_response
from app.ops.nul_guard import (
    SURROGATE_MESSAGE,
    has_nul_escape,
    has_surrogate_escape,
    nul_fields,
    surrogate_fields,
    unstorable_fields,
)
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


_TEXT = st.text(st.characters(codec=None, exclude_categories=()))


@given(
    st.recursive(
        _TEXT | st.integers(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
        max_leaves=10,
    )
)
def test_a_lone_surrogate_is_found_exactly_where_it_is(value: object) -> None:
    raw = json.dumps(value).encode()
    parsed = json.loads(raw)
    lone = surrogate_fields(parsed)
    if lone:
        assert has_surrogate_escape(raw)

    # A field is named exactly when its text does not survive UTF-8.
    def survives(text: str) -> bool:
        try:
            text.encode()
        except UnicodeEncodeError:
            return False
        return True

    def texts(v: object) -> list[str]:
        if isinstance(v, str):
            return [v]
        if isinstance(v, dict):
            return [t for k, i in v.items() for t in (k, *texts(i))]
        if isinstance(v, list):
            return [t for i in v for t in texts(i)]
        return []

    assert bool(lone) == (not all(survives(t) for t in texts(parsed)))
    found = unstorable_fields(raw)
    assert [e["field"] for e in found if e["message"] == SURROGATE_MESSAGE] == lone


def test_surrogate_pairs_are_characters_and_halves_are_not() -> None:
    assert surrogate_fields(json.loads(b'{"a": "\\ud83d\\ude00"}')) == []
    assert surrogate_fields(json.loads(b'{"a": "\\ude00\\ud83d"}')) == ["a"]
    assert surrogate_fields(json.loads(b'{"\\ud800": [1, {"b": "x\\udfff"}]}')) == [
        "\\ud800",
        "\\ud800.1.b",
    ]
    # An escaped backslash: the text `\ud800`, six plain characters.
    assert not has_surrogate_escape(b'{"a": "\\\\ud800"}')
    assert has_surrogate_escape(b'{"a": "\\\\\\ud800"}')


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        (
            "/v1/devices",
            '{"token": "t", "platform": "android", "attributes": {"s": "\\ud800"}}',
            "attributes.s",
        ),
        (
            "/v1/devices",
            '{"token": "t", "platform": "android", "attributes": {"\\udc00": 1}}',
            "attributes.\\udc00",
        ),
        ("/v1/audience/estimate", '{"rules": {"\\ud800": 1}}', "rules.\\ud800"),
        (
            "/v1/segments",
            '{"name": "s", "rules": {"field": "platform", "op": "\\ud800", "value": "x"}}',
            "rules.op",
        ),
        (
            "/v1/campaigns/preview",
            '{"audience": {"rules": {"everyone": true, "\\udc00": 1}}}',
            "audience.rules.\\udc00",
        ),
    ],
)
async def test_a_lone_surrogate_is_a_422_naming_the_field(
    client: httpx.AsyncClient, make_key: KeyMaker, path: str, raw: str, field: str
) -> None:
    answer = await client.post(
        path,
        content=raw.encode(),
        headers={**bearer(await make_key(Scope.admin)), "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    errors = answer.json()["errors"]
    assert {"field": field, "message": SURROGATE_MESSAGE} in errors, errors
    listed = await client.get("/v1/devices", headers=bearer(await make_key(Scope.admin)))
    assert listed.status_code == 200 and listed.json()["items"] == []


async def test_a_surrogate_pair_is_the_character_it_spells(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = {**bearer(await make_key(Scope.admin)), "content-type": "application/json"}
    raw = b'{"token": "t", "platform": "android", "attributes": {"s": "\\ud83d\\ude00"}}'
    answer = await client.post("/v1/devices", content=raw, headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["attributes"] == {"s": "\U0001f600"}


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


def test_a_problem_quoting_a_lone_surrogate_is_still_written() -> None:
    problem = Problem(422, "Invalid", "unknown rule '\ud800' in «rules»")
    body = problem_response(problem).body
    assert json.loads(body)["detail"] == "unknown rule '\ud800' in «rules»"
    plain = problem_response(Problem(422, "Invalid", "«rules»")).body
    assert "«rules»".encode() in plain, "characters are written as themselves when they can be"


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "says"),
    [
        # UTF-8 bytes that encode a lone surrogate: Python's JSON parser reads them as one.
        (
            b'{"token": "t", "platform": "android", "tags": ["\xed\xa0\x80"]}',
            "application/json",
            400,
            "not UTF-8",
        ),
        (
            '{"token": "t", "platform": "android", "tags": ["\\u0000"]}'.encode("utf-16"),
            "application/json",
            400,
            "UTF-16",
        ),
        (
            b'{"token": "t", "platform": "android", "tags": ["\\ud800"]}',
            "Application/JSON",
            422,
            "lone surrogate",
        ),
        (
            b'{"token": "t", "platform": "android", "tags": ["\\u0000"]}',
            "application/vnd.wavecast+json",
            422,
            "NUL",
        ),
    ],
)
async def test_every_road_to_the_json_parser_is_checked(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    raw: bytes,
    content_type: str,
    status: int,
    says: str,
) -> None:
    headers = bearer(await make_key(Scope.admin))
    answer = await client.post(
        "/v1/devices", content=raw, headers={**headers, "content-type": content_type}
    )
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"] or says in str(answer.json()["errors"]), answer.text
    listed = await client.get("/v1/devices", headers=headers)
    assert listed.status_code == 200 and listed.json()["items"] == []
