"""The provider interface: FCM, APNs and the sandbox all look like this to the sender.

A provider sends one campaign's content to a batch of devices and reports one result per
device. It never raises for a per-device failure: it classifies it (SPEC §3 "Provider
errors"), so the sender can decide retries, deactivation or a halt in one place.
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from app.campaigns.schemas import Content
from app.delivery.providers.local_block import LocalBlock, ProviderBlock


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
    # True when the message never left the process: not an attempt. Held back by a Retry-After
    # block (retry once it has passed, `retry_after`), or by a closed fence (`stopped`).
    unsent: bool = False
    # For a dead token, when the provider says it stopped being valid (APNs 410's `timestamp`):
    # a device registered again since keeps its token. None: dead now.
    invalid_since: datetime | None = None


class StartFence(Protocol):
    """Whether a request of this batch may still start (`app.control.fence.Fence`).

    Asked with no I/O right before each request's headers are written; once it says no, no
    request of the batch starts, and those not started come back `stopped` (not an attempt).
    A request waiting to start (for a connection, a stream, credit) registers its task with
    `waiting` and leaves with `started`; closing the fence cancels the waiting ones, and
    `stopped` tells such a cancellation apart from any other. This is what lets a stop answer
    while a slow provider is still working through a batch."""

    def open(self) -> bool: ...

    def waiting(self) -> asyncio.Task[Any] | None: ...

    def started(self, task: asyncio.Task[Any] | None) -> None: ...

    def stopped(self, task: asyncio.Task[Any] | None) -> bool: ...


# The fence of the batch whose requests the current task starts. A provider's `send` sets it
# from `Batch.fence` so that the request paths inside the client libraries (firebase-admin's
# httpx transport, aioapns's connection) can ask it; tasks those libraries create inherit it.
current_fence: ContextVar[StartFence | None] = ContextVar("wavecast_fence", default=None)


def may_start() -> bool:
    """The last look before a request starts: False once the batch's fence has closed."""
    fence = current_fence.get()
    return fence is None or fence.open()


def stopped(delivery_id: int) -> SendResult:
    """A message not sent because the send gate closed before its request started."""
    return SendResult(
        delivery_id,
        ResultKind.retry,
        error_code=STOPPED,
        detail="not sent: the campaign was stopped before this request started",
        unsent=True,
    )


STOPPED = "STOPPED"
TIMEOUT = "timeout"


def timed_out(delivery_id: int, provider: str, seconds: float) -> SendResult:
    """A message whose request had no answer by the batch's deadline. It may have been
    delivered: the retry counts as an attempt."""
    return SendResult(
        delivery_id,
        ResultKind.retry,
        error_code=TIMEOUT,
        detail=f"no answer from {provider} within {seconds:g}s",
    )


def unsent(delivery_id: int, seconds: float) -> SendResult:
    """A message held back while the block had ``seconds`` left."""
    return SendResult(
        delivery_id,
        ResultKind.retry,
        error_code="RETRY_AFTER_HELD",
        detail=f"not sent: the provider asked to wait another {seconds:.3f}s",
        retry_after=seconds,
        unsent=True,
    )


@dataclass(frozen=True)
class Batch:
    campaign_id: str
    content: Content
    messages: Sequence[Message]
    block: ProviderBlock | None = None
    fence: StartFence | None = None
    # `time.monotonic()` by which the provider returns, with every answer it has by then:
    # what is still unanswered comes back as a `timed_out` retry. None: no deadline.
    deadline: float | None = None


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
