"""APNs through aioapns: HTTP/2, token (.p8) authentication, one client per environment.

One client per APNs environment per worker process, built at start-up and kept: Apple
refuses provider tokens refreshed too often. An iOS token goes only to the host of its own
`apns_environment`. Traps of the library handled here:
- it has no request timeout: every request is bounded by `REQUEST_TIMEOUT_SECONDS`;
- it reports refusals as results and never raises: each result is classified by ERRORS;
- on a dropped connection it re-sends the request by itself, so a timeout can hide a
  request Apple did receive; the ledger keeps that to at most one duplicate per request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import APNsProductionClientProtocol

from app.delivery.payloads import apns_payload
from app.delivery.providers.base import Batch, Message, Provider, ResultKind, SendResult

REQUEST_TIMEOUT_SECONDS = 10.0
CONCURRENCY = 1000
MAX_CONNECTIONS = 4

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
    return SendResult(delivery_id, kind, error_code=reason, detail=f"APNs {result.status} {reason}")


@dataclass(frozen=True)
class ApnsCredentials:
    key_path: str
    key_id: str
    team_id: str
    topic: str


def _client(
    credentials: ApnsCredentials, *, sandbox: bool, url: str | None, ca_file: str | None
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
    )
    if url:
        # aioapns fixes the host and port on its protocol class; a subclass points it elsewhere.
        parts = urlsplit(url)
        client.pool.protocol_class = type(
            "ApnsOverride",
            (APNsProductionClientProtocol,),
            {"APNS_SERVER": parts.hostname, "APNS_PORT": parts.port or 443},
        )
    return client


class ApnsProvider(Provider):
    name = "apns"

    def __init__(
        self,
        credentials: ApnsCredentials,
        *,
        sandbox_url: str | None = None,
        production_url: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self._clients = {
            "sandbox": _client(credentials, sandbox=True, url=sandbox_url, ca_file=ca_file),
            "production": _client(credentials, sandbox=False, url=production_url, ca_file=ca_file),
        }
        self._limit = asyncio.Semaphore(CONCURRENCY)

    async def send(self, batch: Batch) -> list[SendResult]:
        priority = batch.content.ios.priority if batch.content.ios else 10
        return list(
            await asyncio.gather(*(self._send_one(batch, m, priority) for m in batch.messages))
        )

    async def _send_one(self, batch: Batch, message: Message, priority: int) -> SendResult:
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
            message=apns_payload(batch.content, message.locale),
            # aioapns turns this into apns-expiration = now + ttl.
            time_to_live=batch.content.ttl_seconds or None,
            priority=priority,
            collapse_key=batch.content.collapse_key,
            push_type=PushType.ALERT,
        )
        async with self._limit:
            try:
                result = await asyncio.wait_for(
                    client.send_notification(request), timeout=REQUEST_TIMEOUT_SECONDS
                )
            except TimeoutError:
                return SendResult(
                    message.delivery_id,
                    ResultKind.retry,
                    error_code="timeout",
                    detail=f"no answer from APNs within {REQUEST_TIMEOUT_SECONDS:.0f}s",
                )
            except (ConnectionError, OSError) as exc:
                return SendResult(
                    message.delivery_id,
                    ResultKind.retry,
                    error_code="connection",
                    detail=f"APNs connection failed: {exc}",
                )
        return classify(message.delivery_id, result)

    async def aclose(self) -> None:
        for client in self._clients.values():
            pool = client.pool
            for connection in list(getattr(pool, "connections", [])):
                connection.close()
