"""FCM through firebase-admin: `messaging.send_each_async`, at most 500 messages a call.

One Firebase app per worker process, built at start-up. Two traps of the library are closed
here rather than worked around in the sender:
- its async client retries 500/503 by itself, up to four times, and ignores Retry-After, so
  its retries would stack on ours and hammer a provider that asked us to wait: the client is
  rebuilt with retries off, and the sender retries (bounded, honouring Retry-After);
- its base URL is fixed to Google's; `WAVECAST_FCM_ENDPOINT` replaces it (emulators, the
  protocol fake), while the service-account JSON's own `token_uri` decides where the OAuth2
  exchange goes.
Retry-After: every answer is seen by the lane's transport as it arrives; one carrying
Retry-After blocks the provider at once (in this process, and through `Batch.block` for every
worker), and from then on no request of any call leaves until the block has passed: those
messages come back `unsent` (not an attempt). A block another worker writes reaches the same
check through the block feed, so its requests already under way are held too. A call also
asks the shared block right before it leaves, after it got its lane.
Throughput: a batch is split into calls of at most `MAX_CALL` messages (what one HTTP/2
connection carries at once), one lane per call in flight (up to `MAX_LANES`), each on a
connection pool of its own (see `FcmProvider.__init__`), and payloads mapped once per locale.
A batch's deadline (`Batch.deadline`) ends only the calls still unanswered: answers already
in are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
import uuid
import warnings
from collections.abc import Generator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import firebase_admin
import httpx
from firebase_admin import _http_client, credentials, exceptions, messaging
from firebase_admin._retry import HttpxRetry
from google.auth.transport import requests as google_auth_requests

from app.campaigns.schemas import REF_KEY
from app.delivery.payloads import collapse_identity, fcm_message, ref_of
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
from app.delivery.providers.local_block import LocalBlock, ProviderBlock

log = logging.getLogger("wavecast.fcm")

# Messages one `send_each_async` call carries: as many as one HTTP/2 connection carries at
# once (httpcore opens one connection per pool and caps it at 100 concurrent streams; Google
# advertises 100 too). A larger call waits in rounds of 100 inside its lane, so a 500-message
# batch took five provider latencies; split over lanes, it takes one.
MAX_CALL = 100
REQUEST_TIMEOUT_SECONDS = 10
POOL_TIMEOUT_SECONDS = 20
MAX_LANES = 32
# HTTP/2 carries many requests a connection (FCM allows 100 streams, so 1,000 requests in
# flight need ~10); over HTTP/1.1 (plain-http emulators) it is one request a connection.
MAX_CONNECTIONS = 100
_AUTH_ATTEMPTS = 3

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
    return _seconds(value)


def _seconds(value: str | None) -> float | None:
    """A Retry-After given in seconds; None when absent or not a finite, non-negative number
    (the HTTP-date form is not used by FCM)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or not 0.0 <= seconds < float("inf"):
        return None
    return seconds


class Held(httpx.TransportError):
    """A request not sent: the provider asked everyone to wait (Retry-After) and the block
    is still in force. firebase-admin reports it as an UnknownError caused by this."""

    def __init__(self, seconds: float, request: httpx.Request) -> None:
        super().__init__(f"held back: provider blocked for another {seconds:.3f}s", request=request)
        self.seconds = seconds


class Fenced(httpx.TransportError):
    """A request not sent: its batch's fence closed (the campaign was stopped, or the gate
    could not be confirmed open) before it started."""

    def __init__(self, request: httpx.Request) -> None:
        super().__init__("not sent: the send gate closed", request=request)


def held_for(error: BaseException) -> float | None:
    """Seconds the block had left when this message was held back; None if it was sent."""
    cause = getattr(error, "cause", None)
    return cause.seconds if isinstance(cause, Held) else None


def was_fenced(error: BaseException) -> bool:
    return isinstance(getattr(error, "cause", None), Fenced)


class _BlockingTransport(httpx.AsyncBaseTransport):
    """The lane's transport: holds requests back while a block is known, and records a block
    from the first answer that carries Retry-After."""

    def __init__(self, inner: httpx.AsyncBaseTransport, blocks: LocalBlock) -> None:
        self._inner = inner
        self._blocks = blocks

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._check(request)
        fence = current_fence.get()
        waiter = fence.waiting() if fence is not None else None
        # A request may still wait in the pool for a connection (HTTP/1.1) or a stream: the
        # last look is taken by httpcore's trace hook, right before its headers are written.
        # Until then a stop cancels the wait (`StartFence.waiting`).
        outer = request.extensions.get("trace")

        async def trace(event: str, info: dict[str, Any]) -> None:
            if event.endswith(".send_request_headers.started"):
                self._check(request)
                if fence is not None:
                    fence.started(waiter)
            if outer is not None:
                await outer(event, info)

        request.extensions["trace"] = trace
        try:
            response = await self._inner.handle_async_request(request)
        except asyncio.CancelledError:
            if fence is not None and fence.stopped(waiter):
                raise Fenced(request) from None
            raise
        finally:
            if fence is not None:
                fence.started(waiter)
        # Retry-After means "wait" on a 429 or a 5xx; on another answer (a 401 retried with
        # a fresh token, say) it asks nothing of other requests.
        if response.status_code == 429 or response.status_code >= 500:
            seconds = _seconds(response.headers.get("retry-after"))
            if seconds:
                await self._blocks.hold(seconds)
        return response

    def _check(self, request: httpx.Request) -> None:
        """Refuse to start a request while the provider is blocked or the batch's fence is
        closed (the fence reaches here through `current_fence`, set by `FcmProvider.send`)."""
        if not may_start():
            raise Fenced(request)
        left = self._blocks.remaining()
        if left > 0:
            raise Held(left, request)

    async def aclose(self) -> None:
        await self._inner.aclose()


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
                tag=options.get("tag"),
            )
            if options
            else None,
        ),
    )


class _CredentialAuth(httpx.Auth):
    """firebase-admin's GoogleAuthCredentialFlow with one google-auth transport per process:
    the library's flow builds a new `requests.Session` for every request it signs."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential
        self._transport = google_auth_requests.Request()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        original = request.headers.copy()
        for attempt in range(_AUTH_ATTEMPTS):
            request.headers = original.copy()
            # Refreshes an expired access token first (a blocking call, once an hour).
            self._credential.before_request(
                self._transport, request.method, str(request.url), request.headers
            )
            response = yield request
            if response.status_code != 401 or attempt == _AUTH_ATTEMPTS - 1:
                return
            self._credential.refresh(self._transport)


class _NoCookies(httpx.Cookies):
    """The lanes' cookie jar, which keeps nothing: FCM's API neither sets nor reads cookies.
    httpx otherwise hands every answer to `http.cookiejar` (building two urllib request and
    response wrappers for it), about 4 % of a sending worker's CPU at FCM's rate."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def http_client(credential: Any, blocks: LocalBlock | None = None) -> _http_client.HttpxAsyncClient:
    """firebase-admin's async client with its retries off and a pool sized for our load.

    The library mounts a retrying transport (500/503 up to four times, Retry-After ignored)
    with httpx's default pool: its retries would stack on the sender's, and at most 20 idle
    connections are kept, so a burst of calls reconnects most of its connections each time.
    Here: no retries (the sender retries, bounded, honouring Retry-After); a pool that keeps
    every connection it opens; the wait for a connection bounded by its own timeout, so a
    request queued behind a busy pool is not cut short by the 10 s request timeout (a request
    that never left the process and times out is retried, never duplicated). Requests are
    signed by `_CredentialAuth`; no cookie is kept (`_NoCookies`). With `blocks`, requests
    go through `_BlockingTransport`.
    """
    client = _http_client.HttpxAsyncClient(
        credential=credential,
        timeout=REQUEST_TIMEOUT_SECONDS,
        retry_config=HttpxRetry(max_retries=0),
    )
    transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(
        http2=True,
        retries=0,
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
        ),
    )
    if blocks is not None:
        transport = _BlockingTransport(transport, blocks)
    client._async_client = httpx.AsyncClient(
        http2=True,
        timeout=httpx.Timeout(REQUEST_TIMEOUT_SECONDS, pool=POOL_TIMEOUT_SECONDS),
        headers=client._headers,
        auth=_CredentialAuth(credential),
        transport=transport,
    )
    # No public way in: httpx copies a jar it is given into a plain one.
    client._async_client._cookies = _NoCookies()
    return client


async def _shared_remaining(block: ProviderBlock | None) -> float:
    if block is None:
        return 0.0
    try:
        return await block.remaining()
    except Exception:
        # The sender asked the same block moments ago (and stops when it cannot): this last
        # look is not worth failing a call for.
        log.warning("could not read the provider's Retry-After block", exc_info=True)
        return 0.0


class FcmProvider(Provider):
    name = "fcm"
    blocks: LocalBlock

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
        # Lanes: copies of the library's messaging service, each with a client (a connection
        # pool) of its own, each carrying one send_each_async call at a time. One is built
        # per call in flight, up to MAX_LANES: a call never queues behind another inside the
        # process (a queue there would count against the sender's timeout and cost attempts),
        # and each pool holds one call's requests (httpcore scans its whole queue on every
        # request it assigns, so sharing a pool between calls costs more per request).
        self._template = service
        self._idle: list[Any] = []
        self._lanes: list[Any] = []
        self._lane_free = asyncio.Condition()
        self._closing: set[asyncio.Task[None]] = set()
        self.blocks = LocalBlock()

    @property
    def project_id(self) -> str:
        project: str = self._app.project_id
        return project

    async def send(self, batch: Batch) -> list[SendResult]:
        if batch.block is not None:
            self.blocks.shared = batch.block
        # For the transport's look before each request (tasks made below inherit it).
        current_fence.set(batch.fence)
        chunks = [
            batch.messages[start : start + MAX_CALL]
            for start in range(0, len(batch.messages), MAX_CALL)
        ]
        calls = [asyncio.ensure_future(self._send_chunk(batch, chunk)) for chunk in chunks]
        left = None if batch.deadline is None else max(0.0, batch.deadline - time.monotonic())
        try:
            await asyncio.wait(calls, timeout=left)
        except asyncio.CancelledError:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            raise
        results: list[SendResult] = []
        for call, chunk in zip(calls, chunks, strict=True):
            if call.done():
                results += call.result()
                continue
            # Past the batch's deadline: the calls that have answered keep their answers
            # (throwing them away would send those devices again); the rest are retries.
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            results += [timed_out(m.delivery_id, self.name, left or 0.0) for m in chunk]
        return results

    def build(self, batch: Batch, chunk: Sequence[Message]) -> list[messaging.Message]:
        """One typed message per device; the content is mapped once per locale, then copied
        with each device's token and delivery reference."""
        started = time.perf_counter()
        templates: dict[str | None, messaging.Message] = {}
        collapse = collapse_identity(batch.content, batch.campaign_id)
        built = []
        for m in chunk:
            template = templates.get(m.locale)
            if template is None:
                template = templates[m.locale] = to_message(
                    fcm_message(batch.content, m.locale, collapse), ""
                )
            message = copy.copy(template)
            message.token = m.token
            # A new dict: the template's is shared by every copy.
            message.data = {**(template.data or {}), REF_KEY: ref_of(m.delivery_id)}
            built.append(message)
        self.payload_seconds += time.perf_counter() - started
        return built

    async def _send_chunk(self, batch: Batch, chunk: Sequence[Message]) -> list[SendResult]:
        built = self.build(batch, chunk)
        lane = await self._take_lane()
        healthy = False
        try:
            # The last word before the call leaves: a block written while it waited for the
            # sender's throttle or for this lane (by this worker or another) holds it back.
            held = max(self.blocks.remaining(), await _shared_remaining(batch.block))
            if not may_start():
                healthy = True
                return [stopped(m.delivery_id) for m in chunk]
            if held > 0:
                healthy = True
                return [unsent(m.delivery_id, held) for m in chunk]
            # What messaging.send_each_async(built, app=...) runs, on this lane's client.
            answer = await lane.send_each_async(built, dry_run=False)
            healthy = True
        except exceptions.FirebaseError as error:
            healthy = True
            return [classify(m.delivery_id, error) for m in chunk]
        finally:
            await self._give_back(lane, healthy)
        results = []
        for message, response in zip(chunk, answer.responses, strict=True):
            if response.success:
                results.append(
                    SendResult(message.delivery_id, ResultKind.sent, message_id=response.message_id)
                )
            elif (left := held_for(response.exception)) is not None:
                results.append(unsent(message.delivery_id, left))
            elif was_fenced(response.exception):
                results.append(stopped(message.delivery_id))
            else:
                results.append(classify(message.delivery_id, response.exception))
        return results

    async def _take_lane(self) -> Any:
        async with self._lane_free:
            while not self._idle and len(self._lanes) >= MAX_LANES:
                await self._lane_free.wait()
            if self._idle:
                return self._idle.pop()
            lane = copy.copy(self._template)
            lane._async_client = http_client(self._template._credential, self.blocks)
            self._lanes.append(lane)
            return lane

    async def _give_back(self, lane: Any, healthy: bool) -> None:
        async with self._lane_free:
            if healthy:
                self._idle.append(lane)
            else:
                # A call cancelled mid-flight (the sender's timeout) can leave httpcore's
                # HTTP/2 connection state inconsistent: the lane's client is not reused.
                self._lanes.remove(lane)
                closing = asyncio.get_running_loop().create_task(lane._async_client.aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            self._lane_free.notify()

    @property
    def lanes(self) -> int:
        """Lanes built so far (calls that were in flight at once, at most MAX_LANES)."""
        return len(self._lanes)

    async def aclose(self) -> None:
        for lane in self._lanes:
            await lane._async_client.aclose()
        # firebase-admin closes its services with asyncio.run(), which cannot run inside this
        # event loop; the client it would close is already closed above.
        await asyncio.to_thread(firebase_admin.delete_app, self._app)
