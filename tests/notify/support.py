"""Fixtures and helpers for the team channel's tests: the Slack fake, settings pointing at it,
and the outbox's dependencies with a clock a test can move."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlmodel import col, select
from wavecast_tools.fakes.slack import DEFAULT_TOKEN, SlackFake

from app.db.types import utcnow
from app.notify.dispatch import OutboxDeps
from app.notify.kinds import Kind
from app.notify.models import SLACK, DeliveryAttempt, OutboxMessage
from app.runtime import Runtime
from app.settings import Settings

CHANNEL = "C0WAVECAST"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@dataclass
class Clock:
    """The outbox's clock: real time plus however far a test moved it."""

    ahead: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.ahead

    def move(self, seconds: float) -> None:
        self.ahead += timedelta(seconds=seconds)


def slack_settings(settings: Settings, fake: SlackFake, **extra: Any) -> Settings:
    return settings.model_copy(
        update={
            "slack_bot_token": SecretStr(DEFAULT_TOKEN),
            "slack_channel": CHANNEL,
            "slack_signing_secret": SecretStr(SIGNING_SECRET),
            "slack_api_url": fake.api_url,
            "public_url": "https://wavecast.bank.example",
            **extra,
        }
    )


@pytest.fixture
async def slack_fake() -> AsyncIterator[SlackFake]:
    async with SlackFake() as fake:
        yield fake


@pytest.fixture
async def outbox(db: Runtime, slack_fake: SlackFake) -> AsyncIterator[OutboxDeps]:
    deps = OutboxDeps.build(slack_settings(db.settings, slack_fake), db.sessionmaker)
    deps.clock = Clock()
    yield deps
    await deps.aclose()


async def slack_rows(runtime: Runtime, *, drafts: bool = False) -> list[OutboxMessage]:
    """The Slack rows in the log's order; without the notes of drafts created or edited
    (possible approval requests) unless `drafts`."""
    async with runtime.sessionmaker() as session:
        query = (
            select(OutboxMessage)
            .where(col(OutboxMessage.destination) == SLACK)
            .order_by(col(OutboxMessage.audit_sequence))
        )
        if not drafts:
            query = query.where(col(OutboxMessage.kind) != Kind.approval_requested.value)
        return list((await session.exec(query)).all())


async def attempts(runtime: Runtime, message_id: int) -> list[DeliveryAttempt]:
    async with runtime.sessionmaker() as session:
        query = (
            select(DeliveryAttempt)
            .where(col(DeliveryAttempt.message_id) == message_id)
            .order_by(col(DeliveryAttempt.attempt))
        )
        return list((await session.exec(query)).all())
