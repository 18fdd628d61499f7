"""Attribute values that cannot be stored and read back as sent are refused, by every road.

A non-finite number, a number outside the signed 64-bit range (1e308 included: PostgreSQL
would give it back as a 309-digit integer) and text holding a lone surrogate are answered 422
naming `attributes.<name>` by registration and patch, and reported against their line by the
import; nothing of theirs is stored, so every later read still answers. The bodies are
written by hand: `NaN`, `1e400` and lone `\\ud800` escapes are what a client can send, and
`json.dumps` would not write most of them.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.auth.models import Scope
from app.devices.schemas import DevicePatch, DeviceRegistration
from tests.conftest import KeyMaker, bearer

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
RANGE = "between -9223372036854775808 and 9223372036854775807"
FINITE = "finite number"
SURROGATE = "lone surrogate"

# The value of attribute `n` as JSON text, and what the refusal must say.
BAD_VALUES = [
    ("NaN", FINITE),
    ("Infinity", FINITE),
    ("-Infinity", FINITE),
    ("1e400", FINITE),
    ("-1e400", FINITE),
    ("9223372036854775808", RANGE),
    ("-9223372036854775809", RANGE),
    ("18446744073709551615", RANGE),
    ("100000000000000000000", RANGE),
    ("1e308", RANGE),
    ("-9.3e18", RANGE),
    ('"\\ud800"', SURROGATE),
    ('"ok \\udc00 then"', SURROGATE),
    ('"\\ude00\\ud83d"', SURROGATE),  # both halves of a pair, in the wrong order
]
GOOD = {
    "min": INT64_MIN,
    "max": INT64_MAX,
    "big": 9.2e18,
    "negative": -1.5e15,
    "tiny": 5e-324,
    "fraction": 0.1,
    "polish": "Zażółć gęślą jaźń",
    "emoji": "🚀 launch 🎉",
    "cjk": "推送通知",
    "yes": True,
    "none": None,
}
JSON = {"content-type": "application/json"}
NDJSON = {"content-type": "application/x-ndjson"}


def registration(token: str, attributes: str) -> bytes:
    return f'{{"token": "{token}", "platform": "android", "attributes": {attributes}}}'.encode()


async def headers(make_key: KeyMaker) -> dict[str, str]:
    return bearer(await make_key(Scope.devices_write, Scope.devices_read))


async def stored(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every device's attributes by token, read through the listing (which must answer)."""
    answer = await client.get("/v1/devices", params={"limit": 1000}, headers=auth)
    assert answer.status_code == 200, answer.text
    return {d["token"]: d["attributes"] for d in answer.json()["items"]}


def assert_refused(answer: httpx.Response, field: str, says: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    error = answer.json()["errors"][0]
    assert error["field"] == field
    assert says in error["message"]


@pytest.mark.parametrize(("value", "says"), BAD_VALUES)
async def test_registration_refuses_an_unstorable_value_and_stores_nothing(
    client: httpx.AsyncClient, make_key: KeyMaker, value: str, says: str
) -> None:
    auth = await headers(make_key)
    body = registration("bad", f'{{"ok": 1, "n": {value}}}')
    answer = await client.post("/v1/devices", content=body, headers={**auth, **JSON})
    assert_refused(answer, "attributes.n", says)
    assert "attributes.n" in answer.json()["detail"]
    assert await stored(client, auth) == {}


@pytest.mark.parametrize(("value", "says"), BAD_VALUES)
async def test_a_patch_with_an_unstorable_value_changes_nothing(
    client: httpx.AsyncClient, make_key: KeyMaker, value: str, says: str
) -> None:
    auth = await headers(make_key)
    created = await client.post(
        "/v1/devices",
        json={"token": "dev", "platform": "android", "attributes": {"n": 1, "s": "ok"}},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    url = f"/v1/devices/{created.json()['id']}"
    answer = await client.patch(
        url, content=f'{{"attributes": {{"n": {value}}}}}'.encode(), headers={**auth, **JSON}
    )
    assert_refused(answer, "attributes.n", says)
    read = await client.get(url, headers=auth)
    assert read.status_code == 200, read.text
    assert read.json()["attributes"] == {"n": 1, "s": "ok"}
    assert await stored(client, auth) == {"dev": {"n": 1, "s": "ok"}}


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\ude00\ud83d"])
def test_the_models_refuse_a_lone_surrogate_whatever_reached_them(text: str) -> None:
    # The API's door refuses one spelled as an escape in a JSON body; the models are the
    # contract for every other road (the import, the CLI, a Python caller).
    for model, body in (
        (DeviceRegistration, {"token": "t", "platform": "android"}),
        (DevicePatch, {}),
    ):
        with pytest.raises(ValidationError) as refused:
            model.model_validate({**body, "attributes": {"ok": "fine", "s": text}})
        (error,) = refused.value.errors()
        assert error["loc"] == ("attributes", "s")
        assert SURROGATE in error["msg"]


async def test_the_import_reports_each_unstorable_value_against_its_line(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    auth = await headers(make_key)
    known = {"token": "known", "platform": "android", "attributes": {"n": 1}}
    assert (await client.post("/v1/devices", json=known, headers=auth)).status_code == 201
    lines = [registration("first", '{"n": 2}')]
    # Each bad value both on a new token and on the known one: neither may be stored.
    for index, (value, _) in enumerate(BAD_VALUES):
        lines.append(registration(f"new{index}", f'{{"n": {value}}}'))
        lines.append(registration("known", f'{{"n": {value}}}'))
    lines.append(registration("last", '{"n": 3}'))
    answer = await client.post(
        "/v1/devices/import", content=b"\n".join(lines), headers={**auth, **NDJSON}
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["created"], result["updated"]) == (2, 0)
    assert result["rejected_total"] == 2 * len(BAD_VALUES)
    rejected = {r["line"]: r["error"] for r in result["rejected"]}
    for index, (value, says) in enumerate(BAD_VALUES):
        for line in (2 + 2 * index, 3 + 2 * index):
            assert rejected[line].startswith("attributes.n: "), (value, rejected[line])
            assert says in rejected[line], (value, rejected[line])
    assert await stored(client, auth) == {"known": {"n": 1}, "first": {"n": 2}, "last": {"n": 3}}


async def test_an_attribute_name_holding_a_lone_surrogate_is_refused(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    auth = await headers(make_key)
    body = registration("bad", '{"\\ud800": "x"}')
    answer = await client.post("/v1/devices", content=body, headers={**auth, **JSON})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"].startswith("attributes")
    imported = await client.post("/v1/devices/import", content=body, headers={**auth, **NDJSON})
    assert imported.status_code == 200, imported.text
    assert imported.json()["rejected"][0]["error"].startswith("attributes")
    assert await stored(client, auth) == {}


async def test_edge_values_that_can_be_stored_read_back_equal(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    auth = await headers(make_key)
    # A surrogate pair, escaped, is one character beyond U+FFFF.
    body = registration("posted", json.dumps(GOOD)[:-1] + ', "pair": "\\ud83d\\ude00"}')
    posted = await client.post("/v1/devices", content=body, headers={**auth, **JSON})
    assert posted.status_code == 201, posted.text
    expected = {**GOOD, "pair": "😀"}
    assert posted.json()["attributes"] == expected

    patched = await client.post(
        "/v1/devices", json={"token": "patched", "platform": "android"}, headers=auth
    )
    answer = await client.patch(
        f"/v1/devices/{patched.json()['id']}", json={"attributes": GOOD}, headers=auth
    )
    assert answer.status_code == 200, answer.text

    lines = [
        json.dumps({"token": "imported", "platform": "android", "attributes": GOOD}).encode(),
        registration("imported-pair", '{"pair": "\\ud83d\\ude00", "max": 9223372036854775807}'),
    ]
    imported = await client.post(
        "/v1/devices/import", content=b"\n".join(lines), headers={**auth, **NDJSON}
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["rejected_total"] == 0

    assert await stored(client, auth) == {
        "posted": expected,
        "patched": GOOD,
        "imported": GOOD,
        "imported-pair": {"pair": "😀", "max": INT64_MAX},
    }
