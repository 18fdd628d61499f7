"""APNs through aioapns: HTTP/2, token (.p8) authentication, one client per environment.

One client per APNs environment per worker process, built at start-up and kept: Apple
refuses provider tokens refreshed too often. An iOS token goes only to the host of its own
`apns_environment`. Traps of the library handled here:
- it has no request timeout: every request is bounded by `REQUEST_TIMEOUT_SECONDS`;
- it reports refusals as results and never raises: each result is classified by ERRORS;
- its HTTP/2 bookkeeping leaks flow-control credit (a connection stalls after ~1,200
  refusals), stream entries (one per 200), and channels (timeouts, resets): the connections
  run `apns_protocol.ApnsProtocol` instead, which closes each of those;
- on a dropped connection its pool silently re-sends the request, up to five times, on top of
  our own retries: the pool here makes one attempt, and a drop comes back as a `connection`
  retry the sender schedules (bounded, backed off). A request lost with its connection may
  have reached Apple, so that retry can duplicate it — at most once per attempt, never
  silently: the ledger counts the attempt;
- its results carry no headers, so a Retry-After from Apple is invisible. Instead: a refused
  row retries with the sender's exponential backoff (2 s doubling to 5 min, ±20 %, at most
  `max_attempts`), and 503 ServiceUnavailable/Shutdown — the service, not one device, is
  down — also pauses every APNs send for `UNAVAILABLE_PAUSE_SECONDS`: held in this process
  the instant the answer is seen and written for every worker through `Batch.block`
  (`LocalBlock.hold`), and reported as that result's retry-after, which the sender applies
  provider-wide.
Pauses are checked on the connection right before a request's headers are written, against
the provider's `LocalBlock`, which the block feed also keeps up with blocks other workers
write: a request not yet on the wire when a pause starts, here or elsewhere, comes back
`unsent` (not an attempt).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import APNsDevelopmentClientProtocol, APNsProductionClientProtocol
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError

from app.delivery.payloads import EncodedWithRef, apns_payload, collapse_identity, ref_of
from app.delivery.providers.apns_protocol import ApnsProtocol, Payload
from app.delivery.providers.base import (
    Batch,
    Message,
    Provider,
    ResultKind,
    SendResult,
    current_fence,
    may_start,
    stopped,
    timed_out,
    unsent,
)
from app.delivery.providers.local_block import LocalBlock

REQUEST_TIMEOUT_SECONDS = 10.0
CONCURRENCY = 1000
MAX_CONNECTIONS = 4
UNAVAILABLE_PAUSE_SECONDS = 5.0
# The service itself is down: every sender waits, not only this device's row.
_SERVICE_DOWN = frozenset({"ServiceUnavailable", "Shutdown", "503"})

# Apple's reasons (SPEC §3): what each answer means for the delivery.
ERRORS: Mapping[str, ResultKind] = {
    "Unregistered": ResultKind.invalid_token,
    "ExpiredToken": ResultKind.invalid_token,
    "BadDeviceToken": ResultKind.invalid_token,
    "DeviceTokenNotForTopic": ResultKind.invalid_token,
    "PayloadTooLarge": ResultKind.failed,
    "BadPayload": ResultKind.failed,
    "PayloadEmpty": ResultKind.failed,
    "BadCollapseId": ResultKind.failed,
    "BadExpirationDate": ResultKind.failed,
    "BadPriority": ResultKind.failed,
    "InvalidPushType": ResultKind.failed,
    "BadMessageId": ResultKind.failed,
    "DuplicateHeaders": ResultKind.failed,
    "BadTopic": ResultKind.halt,
    "MissingTopic": ResultKind.halt,
    "TopicDisallowed": ResultKind.halt,
    "InvalidProviderToken": ResultKind.halt,
    "ExpiredProviderToken": ResultKind.halt,
    "MissingProviderToken": ResultKind.halt,
    "BadEnvironmentKeyIdInToken": ResultKind.halt,
    "UnrelatedKeyIdInToken": ResultKind.halt,
    "BadCertificate": ResultKind.halt,
    "BadCertificateEnvironment": ResultKind.halt,
    "Forbidden": ResultKind.halt,
    "TooManyRequests": ResultKind.retry,
    "TooManyProviderTokenUpdates": ResultKind.retry,
    "InternalServerError": ResultKind.retry,
    "ServiceUnavailable": ResultKind.retry,
    "Shutdown": ResultKind.retry,
    "IdleTimeout": ResultKind.retry,
}
# Statuses whose body may be missing or unknown.
_BY_STATUS: Mapping[str, ResultKind] = {
    "410": ResultKind.invalid_token,
    "413": ResultKind.failed,
    "429": ResultKind.retry,
    "500": ResultKind.retry,
    "503": ResultKind.retry,
}


def classify(delivery_id: int, result: NotificationResult) -> SendResult:
    if result.is_successful:
        return SendResult(delivery_id, ResultKind.sent, message_id=result.notification_id)
    reason = result.description or f"HTTP {result.status}"
    kind = ERRORS.get(reason) or _BY_STATUS.get(str(result.status), ResultKind.failed)
    down = reason in _SERVICE_DOWN or str(result.status) in _SERVICE_DOWN
    return SendResult(
        delivery_id,
        kind,
        error_code=reason,
        detail=f"APNs {result.status} {reason}",
        retry_after=UNAVAILABLE_PAUSE_SECONDS if down else None,
        invalid_since=_invalid_since(result) if kind is ResultKind.invalid_token else None,
    )


def _invalid_since(result: NotificationResult) -> datetime | None:
    """Apple's 410 `timestamp` (milliseconds since the epoch): when it last knew the token to
    be invalid for the topic. None when absent or not a plausible instant."""
    stamp = result.timestamp
    if isinstance(stamp, bool) or not isinstance(stamp, int) or stamp <= 0:
        return None
    try:
        return datetime.fromtimestamp(stamp / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


class Held(Exception):
    """A request not sent: APNs is paused and the pause is still in force."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"held back: APNs paused for another {seconds:.3f}s")
        self.seconds = seconds


class Fenced(Exception):
    """A request not sent: its batch's fence closed before it started."""


class _HoldingProtocol(ApnsProtocol):
    """The connection of one provider: its last look at the provider's block and at the
    batch's fence is taken once the request holds a stream, right before its headers are
    written (a request may wait in aioapns's pool for a connection, for the connection to
    open, or for a stream and flow-control credit)."""

    block: LocalBlock

    def before_start(self) -> None:
        if not may_start():
            raise Fenced()
        left = self.block.remaining()
        if left > 0:
            raise Held(left)
        fence = current_fence.get()
        if fence is not None:
            fence.started(asyncio.current_task())


@dataclass(frozen=True)
class ApnsCredentials:
    key_path: str
    key_id: str
    team_id: str
    topic: str


def _client(
    credentials: ApnsCredentials,
    *,
    sandbox: bool,
    url: str | None,
    ca_file: str | None,
    block: LocalBlock,
) -> APNs:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    client = APNs(
        # aioapns takes the key's text, not its path.
        key=Path(credentials.key_path).read_text(),
        key_id=credentials.key_id,
        team_id=credentials.team_id,
        topic=credentials.topic,
        use_sandbox=sandbox,
        ssl_context=context,
        max_connections=MAX_CONNECTIONS,
        # One attempt: the library's re-sends on a dropped connection would be invisible.
        max_connection_attempts=1,
    )
    # aioapns fixes the host and port on its protocol class; a subclass of ours sets them,
    # and the block its connections check.
    default = APNsDevelopmentClientProtocol if sandbox else APNsProductionClientProtocol
    parts = urlsplit(url) if url else None
    client.pool.protocol_class = type(
        "ApnsSandbox" if sandbox else "ApnsProduction",
        (_HoldingProtocol,),
        {
            "APNS_SERVER": parts.hostname if parts else default.APNS_SERVER,
            "APNS_PORT": (parts.port or 443) if parts else 443,
            "block": block,
        },
    )
    return client


class ApnsProvider(Provider):
    name = "apns"
    blocks: LocalBlock

    def __init__(
        self,
        credentials: ApnsCredentials,
        *,
        sandbox_url: str | None = None,
        production_url: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        # One block for both environments: a pause is provider-wide, as in Redis.
        self.blocks = LocalBlock()
        self._clients = {
            environment: _client(
                credentials,
                sandbox=environment == "sandbox",
                url=url,
                ca_file=ca_file,
                block=self.blocks,
            )
            for environment, url in (("sandbox", sandbox_url), ("production", production_url))
        }
        self._limit = asyncio.Semaphore(CONCURRENCY)

    async def send(self, batch: Batch) -> list[SendResult]:
        if batch.block is not None:
            self.blocks.shared = batch.block
        priority = batch.content.ios.priority if batch.content.ios else 10
        collapse = collapse_identity(batch.content, batch.campaign_id)
        started = time.perf_counter()
        # Mapped and encoded once per locale (see apns_protocol.Payload); each message only
        # joins its delivery reference onto the encoded bytes.
        encoded = {
            locale: EncodedWithRef.of(apns_payload(batch.content, locale))
            for locale in {m.locale for m in batch.messages}
        }
        payloads = [
            Payload(encoded[m.locale].encode(ref_of(m.delivery_id))) for m in batch.messages
        ]
        self.payload_seconds += time.perf_counter() - started
        # For the connection's look before each request (the tasks below inherit it).
        current_fence.set(batch.fence)
        results = await asyncio.gather(
            *(
                self._send_one(batch, m, priority, collapse, payload)
                for m, payload in zip(batch.messages, payloads, strict=True)
            )
        )
        return list(results)

    async def _send_one(
        self,
        batch: Batch,
        message: Message,
        priority: int,
        collapse: str | None,
        payload: Payload,
    ) -> SendResult:
        client = self._clients.get(message.apns_environment or "")
        if client is None:
            # Never guess the host: a token sent to the wrong environment is refused by Apple
            # at best, and at worst reaches a build it was not meant for.
            return SendResult(
                message.delivery_id,
                ResultKind.failed,
                error_code="no_apns_environment",
                detail="the device has no APNs environment (sandbox or production)",
            )
        request = NotificationRequest(
            device_token=message.token,
            message=cast(dict[str, Any], payload),
            # aioapns turns this into apns-expiration = now + ttl.
            time_to_live=batch.content.ttl_seconds or None,
            priority=priority,
            collapse_key=collapse,
            push_type=PushType.ALERT,
        )
        fence = current_fence.get()
        waiter = fence.waiting() if fence is not None else None
        if fence is not None and waiter is None:
            return stopped(message.delivery_id)
        seconds = REQUEST_TIMEOUT_SECONDS
        if batch.deadline is not None:
            seconds = max(0.0, min(seconds, batch.deadline - time.monotonic()))
        try:
            result = await self._request(client, request, seconds)
        except asyncio.CancelledError:
            # A stop cancels a request still waiting to start (`StartFence.waiting`).
            if fence is not None and fence.stopped(waiter):
                return stopped(message.delivery_id)
            raise
        except Held as held:
            return unsent(message.delivery_id, held.seconds)
        except Fenced:
            return stopped(message.delivery_id)
        except TimeoutError:
            return timed_out(message.delivery_id, self.name, seconds)
        except (
            MaxAttemptsExceeded,
            ConnectionClosed,
            ApnsConnectionError,
            ConnectionError,
            OSError,
        ) as exc:
            return SendResult(
                message.delivery_id,
                ResultKind.retry,
                error_code="connection",
                detail=f"APNs connection failed or dropped: {type(exc).__name__} {exc}",
            )
        finally:
            if fence is not None:
                fence.started(waiter)
        classified = classify(message.delivery_id, result)
        if classified.retry_after:
            await self.blocks.hold(classified.retry_after)
        return classified

    async def _request(
        self, client: APNs, request: NotificationRequest, seconds: float
    ) -> NotificationResult:
        async with self._limit:
            if not may_start():
                raise Fenced()
            # A deadline on this task, not a task of its own per request (wait_for); the
            # pool itself, not `client.send_notification`, which logs every refusal at ERROR
            # level (classified and recorded by the caller, refusals are not errors here).
            async with asyncio.timeout(seconds):
                result: NotificationResult = await client.pool.send_notification(request)
                return result

    async def aclose(self) -> None:
        for client in self._clients.values():
            pool = client.pool
            for connection in list(getattr(pool, "connections", [])):
                connection.close()
