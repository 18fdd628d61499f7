"""Malformed signature and timestamp headers through the real endpoints: each is a 401
problem, like a wrong signature, and nothing happens."""

from __future__ import annotations

import time

import httpx
import pytest

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.runtime import Runtime
from tests.conftest import KeyMaker, PersonMaker
from tests.slack.support import command_body, press_body, signed_headers
from tests.slack.test_commands import events, person, running
from tests.support import campaign_status

GOOD_HEX = "0" * 64


def _headers(stamp: bytes, signature: bytes) -> dict[bytes, bytes]:
    # Bytes as they go on the wire: httpx would refuse a non-ASCII str.
    return {
        b"content-type": b"application/x-www-form-urlencoded",
        b"x-slack-request-timestamp": stamp,
        b"x-slack-signature": signature,
    }


NOW = str(int(time.time())).encode()
MALFORMED = {
    # Starlette reads headers as latin-1: \xe9 arrives as "é".
    "non-ascii signature": (NOW, b"v0=" + b"\xe9" * 64),
    "non-ascii in a hex signature": (NOW, b"v0=" + b"0" * 63 + b"\xe9"),
    "non-hex signature": (NOW, b"v0=" + b"z" * 64),
    "wrong prefix": (NOW, b"v1=" + GOOD_HEX.encode()),
    "no prefix": (NOW, GOOD_HEX.encode()),
    "short signature": (NOW, b"v0=abc"),
    "empty signature": (NOW, b""),
    "non-numeric timestamp": (b"soon", b"v0=" + GOOD_HEX.encode()),
    "non-ascii timestamp": (b"17\xe9", b"v0=" + GOOD_HEX.encode()),
    "huge timestamp": (b"9" * 400, b"v0=" + GOOD_HEX.encode()),
    "longer than int() reads": (b"9" * 5000, b"v0=" + GOOD_HEX.encode()),
    "negative timestamp": (b"-" + NOW, b"v0=" + GOOD_HEX.encode()),
    "empty timestamp": (b"", b"v0=" + GOOD_HEX.encode()),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_header_is_refused_401_and_changes_nothing(
    case: str,
    slack_client: httpx.AsyncClient,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
) -> None:
    await person(make_person, make_key, "Ada", "UADA", Scope.kill)
    campaign = await running(slack_client, make_key, db)
    stamp, signature = MALFORMED[case]
    body = command_body(f"kill {campaign} forged", "UADA")
    answer = await slack_client.post(
        "/slack/commands", content=body, headers=_headers(stamp, signature)
    )
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    pressed = await slack_client.post(
        "/slack/interactions",
        content=press_body("wavecast_confirm", "1", "UADA"),
        headers=_headers(stamp, signature),
    )
    assert pressed.status_code == 401, pressed.text
    assert await campaign_status(db, campaign) is CampaignStatus.running
    assert await events(db, "campaign.kill") == []


async def test_the_same_request_correctly_signed_is_taken(
    slack_client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker, db: Runtime
) -> None:
    # The counterpart of the refusals above: the header checks refuse only malformed ones.
    await person(make_person, make_key, "Ada", "UADA", Scope.kill)
    campaign = await running(slack_client, make_key, db)
    body = command_body(f"kill {campaign} wrong segment", "UADA")
    answer = await slack_client.post("/slack/commands", content=body, headers=signed_headers(body))
    assert answer.status_code == 200, answer.text
    assert await campaign_status(db, campaign) is CampaignStatus.killed
