"""Signed Slack requests, as Slack sends them (its v0 algorithm, through slack_sdk's own
signer), to an app whose settings point at the Slack fake."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier
from wavecast_tools.fakes.slack import SlackFake

from app.main import create_app
from app.runtime import Runtime
from tests.notify.support import CHANNEL, SIGNING_SECRET, slack_settings


def signed_headers(
    body: bytes, *, secret: str = SIGNING_SECRET, at: float | None = None
) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": signature,
    }


def command_body(text: str, user: str) -> bytes:
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": "T0BANK",
            "channel_id": CHANNEL,
            "channel_name": "incidents",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/wavecast",
            "text": text,
            "response_url": "https://hooks.slack.com/commands/T0BANK/1/x",
            "trigger_id": "1.2.3",
        }
    ).encode()


async def command(client: httpx.AsyncClient, text: str, user: str) -> httpx.Response:
    body = command_body(text, user)
    return await client.post("/slack/commands", content=body, headers=signed_headers(body))


def press_body(action_id: str, value: str, user: str) -> bytes:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "channel": {"id": CHANNEL},
        "message": {"ts": "1.000001"},
        "actions": [{"action_id": action_id, "value": value, "block_id": "b", "type": "button"}],
        "response_url": "https://hooks.slack.com/actions/T0BANK/1/x",
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


async def press(client: httpx.AsyncClient, action_id: str, value: str, user: str) -> httpx.Response:
    body = press_body(action_id, value, user)
    return await client.post("/slack/interactions", content=body, headers=signed_headers(body))


@pytest.fixture
async def slack_runtime(db: Runtime, slack_fake: SlackFake) -> Runtime:
    return dataclasses.replace(db, settings=slack_settings(db.settings, slack_fake))


@pytest.fixture
async def slack_client(slack_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(slack_runtime.settings, runtime=slack_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as c:
        yield c
