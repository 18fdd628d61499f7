"""A fake of Slack's Web API: the methods Wavecast calls, for the real `slack_sdk` client.

``AsyncWebClient(base_url=fake.api_url)`` talks to it as to ``https://slack.com/api/``:
``POST /api/chat.postMessage``, ``/api/chat.update``, ``/api/chat.postEphemeral`` and
``/api/auth.test``, JSON or form-encoded, with the bot token as ``Authorization: Bearer``.
It keeps every message it accepted (``messages``, with the ``ts`` it answered, and the
edits ``chat.update`` made), records every request (``/_fake/records``, endpoint = the
method name, token = the channel) and fails on demand through fault rules (``/_fake/rules``,
keyed by channel):

- ``ratelimited``: HTTP 429, ``{"ok": false, "error": "ratelimited"}`` and ``Retry-After``
  (the rule's ``retry_after``, default 1), as Slack answers a method called too often;
- ``server_error`` / ``service_unavailable``: HTTP 500 / 503 with an HTML body, as a Slack
  outage looks to a client;
- ``channel_not_found``, ``not_in_channel``, ``invalid_auth``, ``invalid_blocks``,
  ``msg_too_long``: HTTP 200 with ``ok: false`` and that error;
- connection faults (``action: drop``) and latency, as every fake has them.

A connection refused is the fake not running: ``await fake.stop()``, then ``start()`` again
on the same port (``SlackFake(port=...)``).

    python -m wavecast_tools.fakes.slack --port 9003 --token xoxb-test
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from wavecast_tools.fakes.base import ProtocolFake, json_reply
from wavecast_tools.fakes.faults import FaultRule
from wavecast_tools.fakes.records import Record
from wavecast_tools.fakes.server import Reply, Request

DEFAULT_TOKEN = "xoxb-wavecast-fake"
# HTTP status of each error Slack can answer with.
SLACK_ERRORS: dict[str, int] = {
    "ratelimited": 429,
    "server_error": 500,
    "service_unavailable": 503,
    "channel_not_found": 200,
    "not_in_channel": 200,
    "invalid_auth": 200,
    "invalid_blocks": 200,
    "msg_too_long": 200,
}
METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral", "auth.test")


@dataclass
class Message:
    """A message as the channel shows it: posted once, possibly edited since."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    edits: list[dict[str, Any]] = field(default_factory=list)
    ephemeral_to: str | None = None


class SlackFake(ProtocolFake):
    kind = "slack"

    def __init__(self, *, token: str = DEFAULT_TOKEN, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host=host, port=port)
        self.token = token
        self.messages: list[Message] = []
        self._ts = itertools.count(1)

    def error_names(self) -> Iterable[str]:
        return SLACK_ERRORS

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def describe(self) -> dict[str, Any]:
        return {"api_url": self.api_url, "methods": list(METHODS)}

    def posted(self, channel: str | None = None) -> list[Message]:
        """The messages posted to the channel (every channel by default), oldest first."""
        return [
            m
            for m in self.messages
            if m.ephemeral_to is None and (channel is None or m.channel == channel)
        ]

    def reset(self) -> None:
        super().reset()
        self.messages = []

    # -- the Web API -------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        method = path.removeprefix("/api/")
        args = _arguments(request)
        channel = args.get("channel")
        record = self.new_record(request, method, channel if isinstance(channel, str) else None)
        if not path.startswith("/api/") or method not in METHODS:
            return self._answer(record, 404, {"ok": False, "error": "unknown_method"})
        if request.headers.get("authorization", "") != f"Bearer {self.token}":
            return self._answer(record, 200, {"ok": False, "error": "invalid_auth"})
        rule = self.rulebook.pick(record.token)
        delay = 0.0
        if rule is not None:
            record.rule_id = rule.id
            if rule.action != "answer":
                return self.finish(record, Reply(action=rule.action, delay=rule.latency))
            if rule.error is not None:
                return self._error(record, rule, rule.error)
            delay = rule.latency
        if method == "auth.test":
            return self._answer(record, 200, {"ok": True, "user_id": "UFAKEBOT"}, delay)
        if not isinstance(channel, str) or not channel:
            return self._answer(record, 200, {"ok": False, "error": "channel_not_found"}, delay)
        if method == "chat.update":
            return self._update(record, args, channel, delay)
        text, blocks = args.get("text"), _blocks(args.get("blocks"))
        if not text and not blocks:
            return self._answer(record, 200, {"ok": False, "error": "no_text"}, delay)
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        user = args.get("user") if method == "chat.postEphemeral" else None
        self.messages.append(Message(channel, ts, text, blocks, ephemeral_to=user))
        record.message_id = ts
        if user is not None:
            return self._answer(record, 200, {"ok": True, "message_ts": ts}, delay)
        body = {"ok": True, "channel": channel, "ts": ts, "message": {"text": text, "ts": ts}}
        return self._answer(record, 200, body, delay)

    def _update(self, record: Record, args: dict[str, Any], channel: str, delay: float) -> Reply:
        ts = args.get("ts")
        for message in self.messages:
            if message.channel == channel and message.ts == ts:
                text, blocks = args.get("text"), _blocks(args.get("blocks"))
                message.edits.append({"text": text, "blocks": blocks})
                message.text, message.blocks = text, blocks
                record.message_id = ts
                return self._answer(record, 200, {"ok": True, "channel": channel, "ts": ts}, delay)
        return self._answer(record, 200, {"ok": False, "error": "message_not_found"}, delay)

    def _error(self, record: Record, rule: FaultRule, error: str) -> Reply:
        record.reason = error
        status = SLACK_ERRORS[error]
        if status >= 500:
            reply = Reply(
                status, [("content-type", "text/html")], b"<html>Slack is down</html>", rule.latency
            )
            return self.finish(record, reply)
        headers: list[tuple[str, str]] = []
        if status == 429:
            headers.append(
                ("retry-after", str(rule.retry_after if rule.retry_after is not None else 1))
            )
        return self._answer(record, status, {"ok": False, "error": error}, rule.latency, headers)

    def _answer(
        self,
        record: Record,
        status: int,
        body: dict[str, Any],
        delay: float = 0.0,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        if not body.get("ok"):
            record.reason = record.reason or str(body.get("error"))
        reply = json_reply(status, body, headers)
        reply.delay = delay
        return self.finish(record, reply)


def _arguments(request: Request) -> dict[str, Any]:
    """The call's arguments: a JSON body, or a form (the SDK sends either)."""
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return {k: v[-1] for k, v in parse_qs(request.body.decode(errors="replace")).items()}


def _blocks(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, list) else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wavecast_tools.fakes.slack", description="Fake Slack Web API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bot token it accepts")
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from wavecast_tools.fakes.cli import run_fake

    args = build_parser().parse_args(argv)
    fake = SlackFake(token=args.token, host=args.host, port=args.port)
    return run_fake(fake, args, lambda: {"api_url": fake.api_url, "token": fake.token})


if __name__ == "__main__":
    raise SystemExit(main())
