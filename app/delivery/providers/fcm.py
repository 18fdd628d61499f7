"""FCM through firebase-admin: `messaging.send_each_async`, at most 500 messages a call.

One Firebase app per worker process, built at start-up. Two traps of the library are closed
here rather than worked around in the sender:
- its async client retries 500/503 by itself, up to four times, and ignores Retry-After, so
  its retries would stack on ours and hammer a provider that asked us to wait: the client is
  rebuilt with retries off, and the sender retries (bounded, honouring Retry-After);
- its base URL is fixed to Google's; `WAVECAST_FCM_ENDPOINT` replaces it (emulators, the
  protocol fake), while the service-account JSON's own `token_uri` decides where the OAuth2
  exchange goes.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import firebase_admin
from firebase_admin import _http_client, credentials, exceptions, messaging
from firebase_admin._retry import HttpxRetry

from app.delivery.payloads import fcm_message
from app.delivery.providers.base import Batch, Message, Provider, ResultKind, SendResult

MAX_BATCH = 500
REQUEST_TIMEOUT_SECONDS = 10

# The error taxonomy for FCM (SPEC §3): what each answer means for the delivery.
ERRORS: Mapping[type[exceptions.FirebaseError], tuple[ResultKind, str]] = {
    messaging.UnregisteredError: (ResultKind.invalid_token, "UNREGISTERED"),
    messaging.SenderIdMismatchError: (ResultKind.halt, "SENDER_ID_MISMATCH"),
    messaging.ThirdPartyAuthError: (ResultKind.halt, "THIRD_PARTY_AUTH_ERROR"),
    messaging.QuotaExceededError: (ResultKind.retry, "QUOTA_EXCEEDED"),
    exceptions.InvalidArgumentError: (ResultKind.failed, "INVALID_ARGUMENT"),
    exceptions.UnavailableError: (ResultKind.retry, "UNAVAILABLE"),
    exceptions.InternalError: (ResultKind.retry, "INTERNAL"),
    exceptions.ResourceExhaustedError: (ResultKind.retry, "RESOURCE_EXHAUSTED"),
    exceptions.DeadlineExceededError: (ResultKind.retry, "DEADLINE_EXCEEDED"),
    exceptions.UnauthenticatedError: (ResultKind.halt, "UNAUTHENTICATED"),
    exceptions.PermissionDeniedError: (ResultKind.halt, "PERMISSION_DENIED"),
    exceptions.NotFoundError: (ResultKind.invalid_token, "NOT_FOUND"),
    exceptions.UnknownError: (ResultKind.retry, "UNKNOWN"),
}


def classify(delivery_id: int, error: BaseException) -> SendResult:
    """One FCM failure as a result: the most specific class in ERRORS wins."""
    for cls in type(error).__mro__:
        if cls in ERRORS:
            kind, code = ERRORS[cls]
            break
    else:
        kind, code = ResultKind.retry, type(error).__name__
    return SendResult(
        delivery_id,
        kind,
        error_code=code,
        detail=str(error)[:500],
        retry_after=retry_after(error),
    )


def retry_after(error: BaseException) -> float | None:
    response = getattr(error, "http_response", None)
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def to_message(payload: Mapping[str, Any], token: str) -> messaging.Message:
    """The dict from `payloads.fcm_message` as firebase-admin's typed Message."""
    notification = payload["notification"]
    android: Mapping[str, Any] = payload.get("android", {})
    options: Mapping[str, Any] = android.get("notification", {})
    ttl = android.get("ttl")
    with warnings.catch_warnings():
        # firebase-admin 7.7 deprecates `token` in favour of `fid` (a Firebase installation
        # id, another identifier); devices register FCM registration tokens, which the v1 API
        # still takes as `token`.
        warnings.simplefilter("ignore", DeprecationWarning)
        return _message(payload, token, notification, android, options, ttl)


def _message(
    payload: Mapping[str, Any],
    token: str,
    notification: Mapping[str, Any],
    android: Mapping[str, Any],
    options: Mapping[str, Any],
    ttl: str | None,
) -> messaging.Message:
    return messaging.Message(
        token=token,
        notification=messaging.Notification(title=notification["title"], body=notification["body"]),
        data=dict(payload.get("data", {})) or None,
        android=messaging.AndroidConfig(
            ttl=timedelta(seconds=int(ttl.rstrip("s"))) if ttl else None,
            priority=str(android.get("priority", "HIGH")).lower(),
            collapse_key=android.get("collapse_key"),
            notification=messaging.AndroidNotification(
                channel_id=options.get("channel_id"),
                icon=options.get("icon"),
                color=options.get("color"),
                sound=options.get("sound"),
                image=options.get("image"),
            )
            if options
            else None,
        ),
    )


class FcmProvider(Provider):
    name = "fcm"

    def __init__(
        self, credentials_path: str, *, endpoint: str | None = None, app_name: str | None = None
    ) -> None:
        self._app = firebase_admin.initialize_app(
            credentials.Certificate(credentials_path),
            options={"httpTimeout": REQUEST_TIMEOUT_SECONDS},
            name=app_name or f"wavecast-{uuid.uuid4().hex[:8]}",
        )
        service = messaging._get_messaging_service(self._app)
        if endpoint:
            service._fcm_url = (
                f"{endpoint.rstrip('/')}/v1/projects/{self._app.project_id}/messages:send"
            )
        service._async_client = _http_client.HttpxAsyncClient(
            credential=service._credential,
            timeout=REQUEST_TIMEOUT_SECONDS,
            retry_config=HttpxRetry(max_retries=0),
        )
        self._service = service
        # One call (up to 500 requests) in flight per process: more only queue on the client's
        # 100-connection pool until they time out. Send loops still overlap: while one sends,
        # the others claim and record in the database.
        self._one_call = asyncio.Semaphore(1)

    @property
    def project_id(self) -> str:
        project: str = self._app.project_id
        return project

    async def send(self, batch: Batch) -> list[SendResult]:
        results: list[SendResult] = []
        for start in range(0, len(batch.messages), MAX_BATCH):
            results += await self._send_chunk(batch, batch.messages[start : start + MAX_BATCH])
        return results

    async def _send_chunk(self, batch: Batch, chunk: Sequence[Message]) -> list[SendResult]:
        built = [to_message(fcm_message(batch.content, m.locale), m.token) for m in chunk]
        try:
            async with self._one_call:
                answer = await messaging.send_each_async(built, app=self._app)
        except exceptions.FirebaseError as error:
            return [classify(m.delivery_id, error) for m in chunk]
        results = []
        for message, response in zip(chunk, answer.responses, strict=True):
            if response.success:
                results.append(
                    SendResult(message.delivery_id, ResultKind.sent, message_id=response.message_id)
                )
            else:
                results.append(classify(message.delivery_id, response.exception))
        return results

    async def aclose(self) -> None:
        await self._service._async_client.aclose()
        # firebase-admin closes its services with asyncio.run(), which cannot run inside this
        # event loop; the client it would close is already closed above.
        await asyncio.to_thread(firebase_admin.delete_app, self._app)
