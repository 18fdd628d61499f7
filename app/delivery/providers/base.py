"""The provider interface: FCM, APNs and the sandbox all look like this to the sender.

A provider sends one campaign's content to a batch of devices and reports one result per
device. It never raises for a per-device failure: it classifies it (SPEC §3 "Provider
errors"), so the sender can decide retries, deactivation or a halt in one place.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from app.campaigns.schemas import Content

if TYPE_CHECKING:
    from app.delivery.providers.local_block import LocalBlock


@dataclass(frozen=True)
class Message:
    delivery_id: int
    device_id: uuid.UUID
    token: str
    platform: str
    locale: str | None
    apns_environment: str | None


class ResultKind(StrEnum):
    sent = "sent"
    # The token is dead: deactivate the device, never retry.
    invalid_token = "invalid_token"
    # Transient (5xx, 429, timeout, dropped connection): retry later, bounded.
    retry = "retry"
    # Permanent for this message (bad payload): do not retry.
    failed = "failed"
    # The environment is misconfigured (auth, sender mismatch): stop the whole campaign.
    halt = "halt"


@dataclass(frozen=True)
class SendResult:
    delivery_id: int
    kind: ResultKind
    message_id: str | None = None
    error_code: str | None = None
    detail: str | None = None
    # Seconds the provider asked every sender to wait (429 Retry-After).
    retry_after: float | None = None
    # True when the message never left the process (a Retry-After block was known before its
    # request went out): not an attempt; retry once the block has passed (`retry_after`).
    unsent: bool = False


class ProviderBlock(Protocol):
    """The provider-wide Retry-After block shared by every worker (the sender's throttle).

    A provider that sees each answer as it arrives writes a block at once through ``block``,
    and asks ``remaining`` right before a call leaves, so nothing goes out inside a window
    another worker (or another call) already knows about."""

    async def remaining(self) -> float:
        """Seconds until the block ends; 0.0 when there is none."""

    async def block(self, seconds: float) -> None:
        """No request may leave within ``seconds`` from now (only ever lengthens)."""


@dataclass(frozen=True)
class Batch:
    campaign_id: str
    content: Content
    messages: Sequence[Message]
    block: ProviderBlock | None = None


class Provider(ABC):
    name: str
    # Seconds spent building payloads since start-up (the delivery benchmark reports it).
    payload_seconds: float = 0.0
    # The provider-wide Retry-After block as this process knows it, read right before each
    # request leaves; the block feed writes other workers' blocks into it. None for a
    # provider that reaches no real service (sandbox, unconfigured).
    blocks: LocalBlock | None = None

    @abstractmethod
    async def send(self, batch: Batch) -> list[SendResult]:
        """Send and classify; exactly one result per message, in any order."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Release connections; called once when the worker stops."""
