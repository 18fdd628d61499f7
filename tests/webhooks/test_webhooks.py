"""Webhooks: the API, Standard Webhooks signatures verified by the package on a real HTTP
receiver, retries through the outbox, and each webhook's deliveries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from app.auth.models import Scope
from app.campaigns.models import IdempotentRequest
from app.notify.dispatch import OutboxDeps, dispatch
from app.runtime import Runtime
from app.webhooks.service import url_problems
from tests.conftest import KeyMaker, bearer
from tests.notify.support import Clock
from tests.support import add_devices, campaign_body, create_and_start


@dataclass
class Receiver:
    """A marketing tool's endpoint: answers with the statuses queued in `answers` (then 204),
    and keeps what it received."""

    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.received.append((headers, body))
        status = self.answers.pop(0) if self.answers else 204
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    found.url = f"http://127.0.0.1:{port}/hooks/wavecast"
    async with server:
        yield found


def test_webhook_urls_are_plain_http_addresses() -> None:
    assert url_problems("https://crm.example/hooks?x=1") == []
    assert url_problems("http://10.0.0.5:8080/h") == []
    assert "must be an http:// or https:// URL (scheme)" in url_problems("ftp://crm.example/h")
    assert "must not carry credentials (user:password@)" in url_problems(
        "https://u:p@crm.example/h"
    )
    assert "must name a host" in url_problems("https:///h")
    assert url_problems("javascript:alert(1)")
    assert url_problems("https://crm.example:99999/h")
    assert url_problems("https://crm.example/a b")


async def test_the_api_validates_shows_the_secret_once_and_needs_admin(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    admin = bearer(await make_key(Scope.admin))
    writer = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_operate))
    bad = await client.post(
        "/v1/webhooks",
        json={"url": "https://u:p@crm.example/h", "events": ["campaign.exploded"]},
        headers=admin,
    )
    assert bad.status_code == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert fields == {"url", "events[0]"}
    assert (
        await client.post(
            "/v1/webhooks", json={"url": "https://crm.example/h", "events": []}, headers=admin
        )
    ).status_code == 422
    denied = await client.post(
        "/v1/webhooks", json={"url": "https://crm.example/h", "events": ["*"]}, headers=writer
    )
    assert denied.status_code == 403
    created = await client.post(
        "/v1/webhooks",
        json={"url": "https://crm.example/h", "events": ["campaign.killed", "campaign.started"]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    Verifier(secret)  # a secret the package accepts
    webhook_id = created.json()["id"]
    listed = (await client.get("/v1/webhooks", headers=admin)).json()
    assert [w["id"] for w in listed] == [webhook_id]
    assert "secret" not in listed[0]
    assert "secret" not in (await client.get(f"/v1/webhooks/{webhook_id}", headers=admin)).json()
    audit = (
        await client.get("/v1/audit", params={"action": "webhook.created"}, headers=admin)
    ).json()
    assert secret not in json.dumps(audit)
    assert (await client.delete(f"/v1/webhooks/{webhook_id}", headers=admin)).status_code == 204
    assert (await client.get("/v1/webhooks", headers=admin)).json() == []
    assert (await client.delete(f"/v1/webhooks/{webhook_id}", headers=admin)).status_code == 404


async def test_a_replayed_creation_never_shows_the_secret_again(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    admin = bearer(await make_key(Scope.admin))
    body = {"url": "https://crm.example/h", "events": ["campaign.killed"]}
    headers = {**admin, "Idempotency-Key": "hook-1"}
    first = await client.post("/v1/webhooks", json=body, headers=headers)
    assert first.status_code == 201, first.text
    secret = first.json()["secret"]
    assert secret.startswith("whsec_")
    again = await client.post("/v1/webhooks", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["secret"] is None
    assert secret not in again.text
    # Nothing the service stored for replays holds it either.
    async with db.sessionmaker() as session:
        stored = (await session.execute(select(IdempotentRequest))).scalars().all()
    assert stored and all(secret not in json.dumps(r.response) for r in stored)
    assert len((await client.get("/v1/webhooks", headers=admin)).json()) == 1


async def test_deliveries_are_signed_retried_and_listed(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    outbox: OutboxDeps,
    receiver: Receiver,
) -> None:
    admin = bearer(await make_key(Scope.admin))
    created = await client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["campaign.killed", "campaign.started"]},
        headers=admin,
    )
    secret, webhook_id = created.json()["secret"], created.json()["id"]
    await add_devices(db, 3)
    campaign = await create_and_start(client, admin, campaign_body())
    await client.post(
        f"/v1/campaigns/{campaign}/pause", json={"reason": "not subscribed"}, headers=admin
    )
    await client.post(
        f"/v1/campaigns/{campaign}/kill", json={"reason": "wrong audience"}, headers=admin
    )

    receiver.answers = [503, 500]  # the tool is down for the first two tries
    await dispatch(outbox)
    assert isinstance(outbox.clock, Clock)
    outbox.clock.move(1.1)
    await dispatch(outbox)
    outbox.clock.move(2.1)
    await dispatch(outbox)
    await dispatch(outbox)

    verifier = Verifier(secret)
    payloads: list[dict[str, Any]] = [
        verifier.verify(body, headers) for headers, body in receiver.received
    ]
    assert len(receiver.received) == 4  # 2 failures, then each of the two kinds once
    kinds = [p["type"] for p in payloads]
    assert kinds.count("campaign.started") + kinds.count("campaign.killed") == 4
    killed = next(p for p in payloads if p["type"] == "campaign.killed")
    assert killed["data"]["reason"] == "wrong audience"
    assert killed["data"]["link"].endswith(f"/ui/campaigns/{campaign}")
    assert killed["data"]["campaign_name"] == "November statement"
    # The same message keeps its webhook-id across retries; a tampered body fails.
    ids = [h["webhook-id"] for h, _ in receiver.received]
    assert len(set(ids)) == 2
    headers, body = receiver.received[-1]
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body.replace(b"wrong", b"right"), headers)
    with pytest.raises(WebhookVerificationError):
        Verifier("whsec_" + "A" * 43 + "=").verify(body, headers)

    page = (await client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=admin)).json()
    assert [d["type"] for d in page["items"]] == ["campaign.killed", "campaign.started"]
    assert all(d["status"] == "sent" for d in page["items"])
    tries = sorted(
        (len(d["attempts"]), [a["outcome"] for a in d["attempts"]]) for d in page["items"]
    )
    assert tries[-1][1][-1] == "sent"
    assert sum(n for n, _ in tries) == 4
    statuses = [a["status_code"] for d in page["items"] for a in d["attempts"]]
    assert sorted(statuses) == [204, 204, 500, 503]
    first_page = (
        await client.get(
            f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 1}, headers=admin
        )
    ).json()
    assert len(first_page["items"]) == 1 and first_page["next_cursor"]


async def test_a_deleted_webhook_gets_nothing_more(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    outbox: OutboxDeps,
    receiver: Receiver,
) -> None:
    admin = bearer(await make_key(Scope.admin))
    created = await client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["*"]}, headers=admin
    )
    await add_devices(db, 2)
    await create_and_start(client, admin, campaign_body())
    await client.delete(f"/v1/webhooks/{created.json()['id']}", headers=admin)
    await dispatch(outbox)
    assert receiver.received == []
    page = (
        await client.get(f"/v1/webhooks/{created.json()['id']}/deliveries", headers=admin)
    ).json()
    assert [d["status"] for d in page["items"]] == ["skipped", "skipped"]
