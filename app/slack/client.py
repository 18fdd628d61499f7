"""Slack's Web API through the official SDK (`slack_sdk.web.async_client.AsyncWebClient`),
pointed at `WAVECAST_SLACK_API_URL`, and what each answer means for a retry.

The SDK's own retry handlers are off: the outbox retries (bounded, backed off, honouring
Retry-After) across worker runs and processes, and a request is never repeated inside one
call, where a second post could double a message Slack had already accepted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app.settings import Settings

# One Web API call's whole exchange; a message is then retried by the outbox.
TIMEOUT_SECONDS = 5
# Answers that would be the same on every try: giving up at once is the honest outcome.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "invalid_attachments",
        "msg_too_long",
        "no_text",
        "too_many_attachments",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
    }
)


@dataclass(frozen=True)
class SlackAnswer:
    ok: bool
    ts: str | None = None
    channel: str | None = None
    status_code: int | None = None
    error: str | None = None
    # Seconds Slack asked us to wait (HTTP 429 `Retry-After`).
    retry_after: float | None = None
    permanent: bool = False


def answer_of_error(
    status_code: int | None, error: str | None, retry_after: str | None
) -> SlackAnswer:
    """A refusal or failure as the outbox sees it: permanent or worth another try."""
    wait: float | None = None
    if retry_after is not None:
        try:
            wait = max(0.0, float(retry_after))
        except ValueError:
            wait = None
    if status_code == 429 and wait is None:
        wait = 1.0
    permanent = error in PERMANENT_ERRORS and status_code not in (429,) and (status_code or 0) < 500
    return SlackAnswer(
        ok=False,
        status_code=status_code,
        error=error or (f"HTTP {status_code}" if status_code else "no answer"),
        retry_after=wait,
        permanent=permanent,
    )


class SlackClient:
    def __init__(self, settings: Settings) -> None:
        self.channel = settings.slack_channel
        token = settings.slack_bot_token.get_secret_value()
        self.configured = bool(token and settings.slack_channel)
        self.web = AsyncWebClient(
            token=token or None,
            base_url=_with_slash(settings.slack_api_url),
            timeout=TIMEOUT_SECONDS,
            retry_handlers=[],
        )

    async def post(self, message: dict[str, Any], *, channel: str | None = None) -> SlackAnswer:
        return await self._call(
            self.web.chat_postMessage(
                channel=channel or self.channel, unfurl_links=False, **message
            )
        )

    async def update(self, channel: str, ts: str, message: dict[str, Any]) -> SlackAnswer:
        return await self._call(self.web.chat_update(channel=channel, ts=ts, **message))

    async def ephemeral(self, channel: str, user: str, text: str) -> SlackAnswer:
        return await self._call(self.web.chat_postEphemeral(channel=channel, user=user, text=text))

    @staticmethod
    async def _call(request: Any) -> SlackAnswer:
        try:
            response = await request
        except SlackApiError as exc:
            resp = exc.response
            status = getattr(resp, "status_code", None) or getattr(resp, "status", None)
            headers = getattr(resp, "headers", None) or {}
            data = getattr(resp, "data", None)
            error = data.get("error") if isinstance(data, dict) else None
            return answer_of_error(status, error, headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return answer_of_error(None, f"{type(exc).__name__}: {exc}".rstrip(": "), None)
        data = response.data if isinstance(response.data, dict) else {}
        return SlackAnswer(
            ok=True,
            ts=data.get("ts"),
            channel=data.get("channel"),
            status_code=response.status_code,
        )


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"
