"""Instants a caller sends: an offset is required, and the instant must exist in UTC.

Every instant is stored and compared in UTC. A timestamp without an offset, or one whose
offset carries it past year 9999 or before year 1, is a 422 that names the parameter, on
every route that takes one, never a 500 from deep in a query.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.auth.models import Scope
from app.instants import FIRST, LAST, OUT_OF_RANGE, representable_in_utc
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body

NO_OFFSET = "2026-01-01T00:00:00"
BEFORE_YEAR_1 = "0001-01-01T00:00:00+01:00"
AFTER_YEAR_9999 = "9999-12-31T23:59:59-01:00"
NEEDS_OFFSET = "the timestamp needs its timezone offset"

# (path, the query parameter's name as the caller wrote it)
QUERIES = [
    ("/v1/audit", "since"),
    ("/v1/audit", "until"),
    ("/v1/audit/export", "from"),
    ("/v1/audit/export", "to"),
    ("/v1/devices", "seen_since"),
]


@pytest.mark.parametrize(("path", "name"), QUERIES)
@pytest.mark.parametrize(
    ("value", "message"),
    [(NO_OFFSET, NEEDS_OFFSET), (BEFORE_YEAR_1, OUT_OF_RANGE), (AFTER_YEAR_9999, OUT_OF_RANGE)],
)
async def test_a_query_instant_without_offset_or_outside_utc_is_a_422_naming_it(
    client: httpx.AsyncClient, make_key: KeyMaker, path: str, name: str, value: str, message: str
) -> None:
    answer = await client.get(
        path, params={name: value}, headers=bearer(await make_key(Scope.admin))
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    [error] = answer.json()["errors"]
    assert error["field"].endswith(name), error
    assert message in error["message"], error


@pytest.mark.parametrize(("path", "name"), QUERIES)
async def test_the_extremes_utc_holds_are_accepted(
    client: httpx.AsyncClient, make_key: KeyMaker, path: str, name: str
) -> None:
    headers = bearer(await make_key(Scope.admin))
    for value in (
        "0001-01-01T00:00:00.000001Z",
        "9999-12-31T23:59:59.999998Z",
        "2026-12-07T03:00:00+09:00",
    ):
        answer = await client.get(path, params={name: value}, headers=headers)
        assert answer.status_code == 200, (value, answer.text)


async def test_engagement_since_is_checked_and_an_opens_series_near_year_9999_is_empty(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.admin))
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    assert created.status_code == 201, created.text
    path = f"/v1/campaigns/{created.json()['id']}/engagement"
    for value, message in ((NO_OFFSET, NEEDS_OFFSET), (BEFORE_YEAR_1, OUT_OF_RANGE)):
        answer = await client.get(path, params={"since": value}, headers=headers)
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["errors"]
        assert error["field"].endswith("since") and message in error["message"], error
    # The series would run to an hour after its start: past year 9999, so it ends now.
    for value in ("9999-12-31T23:30:00Z", "0001-01-01T00:00:01Z"):
        answer = await client.get(path, params={"since": value}, headers=headers)
        assert answer.status_code == 200, (value, answer.text)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            campaign_body(rollout={"waves": [{"percent": 100}], "start_at": BEFORE_YEAR_1}),
            "rollout.start_at",
        ),
        (
            campaign_body(rollout={"waves": [{"percent": 100}], "start_at": AFTER_YEAR_9999}),
            "rollout.start_at",
        ),
        (campaign_body(expires_at=BEFORE_YEAR_1), "expires_at"),
        (campaign_body(expires_at=AFTER_YEAR_9999), "expires_at"),
        # Stored by PostgreSQL's driver as infinity and -infinity.
        (campaign_body(expires_at="9999-12-31T23:59:59.999999Z"), "expires_at"),
        (
            campaign_body(rollout={"waves": [{"percent": 100}], "start_at": "0001-01-01T00:00Z"}),
            "rollout.start_at",
        ),
        (
            campaign_body(
                rollout={"waves": [{"percent": 100}], "start_at": "0001-01-01T01:00+01:00"}
            ),
            "rollout.start_at",
        ),
    ],
)
async def test_a_campaign_instant_outside_utc_is_a_422_naming_it(
    client: httpx.AsyncClient, make_key: KeyMaker, body: dict[str, object], field: str
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write))
    answer = await client.post("/v1/campaigns", json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    fields = {e["field"]: e["message"] for e in answer.json()["errors"]}
    assert any(f.endswith(field) and OUT_OF_RANGE in m for f, m in fields.items()), fields


@given(
    moment=st.datetimes(),
    minutes=st.integers(-24 * 60 + 1, 24 * 60 - 1),
)
@example(moment=FIRST.replace(tzinfo=None), minutes=0)
@example(moment=LAST.replace(tzinfo=None), minutes=0)
@example(moment=FIRST.replace(tzinfo=None, hour=1), minutes=60)
@example(moment=FIRST.replace(tzinfo=None, microsecond=1), minutes=0)
def test_an_instant_passes_exactly_when_it_exists_in_utc(moment: datetime, minutes: int) -> None:
    """Its first and last microseconds excepted (stored as -infinity and infinity)."""
    value = moment.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    try:
        in_utc = value - value.utcoffset()  # type: ignore[operator]
    except OverflowError:
        in_utc = None
    if in_utc is None or in_utc.replace(tzinfo=UTC) in (FIRST, LAST):
        with pytest.raises(ValueError, match="out of range"):
            representable_in_utc(value)
    else:
        assert representable_in_utc(value) is value
