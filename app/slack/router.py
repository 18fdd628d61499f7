"""`POST /slack/commands` (the `/wavecast` slash command) and `POST /slack/interactions`
(message buttons): Slack's own signed requests, no API key.

Every request is checked against Slack's signature first (`app.slack.signature`): a bad or
stale one answers 401 and nothing else happens. Slack waits 3 seconds for an answer, so
each request gets ANSWER_WITHIN: a command done by then (a stop whose drain is confirmed,
as usual) answers with its outcome; one still confirming its stop answers that the stop is
recorded and in force, and its outcome is posted to the channel once confirmed. Button
presses are answered to the person who pressed, through the Web API. A command that fails
for a reason of ours (anything but a Problem) is logged with its traceback and answered, or
followed up, to the person alone: "failed: see the service's logs"."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from app.control.plane import Control
from app.deps import RedisDep, RuntimeDep, SettingsDep, require_schema
from app.errors import Problem
from app.notify.compose import APPROVE_ACTION, CONFIRM_ACTION
from app.settings import Settings
from app.slack import commands
from app.slack.client import SlackClient
from app.slack.commands import Reply, SlackDeps
from app.slack.signature import problem as signature_problem

router = APIRouter(prefix="/slack", tags=["slack"], include_in_schema=False)
log = logging.getLogger("wavecast.slack")

# Slack gives up on an answer after 3 s; this leaves room for the way back.
ANSWER_WITHIN = 2.5
# Replies still being worked on after the answer (kept referenced until done).
_pending: set[asyncio.Task[None]] = set()
# What the person sees when a command fails for a reason of ours (not a refusal): the
# details, with the traceback, are in the service's log.
FAILED = Reply(":x: failed: see the service's logs", ok=False)


async def signed_body(request: Request, settings: SettingsDep) -> bytes:
    """The raw body, once its Slack signature is verified; 401 otherwise."""
    body = await request.body()
    why = signature_problem(
        settings.slack_signing_secret.get_secret_value(),
        request.headers.get("x-slack-request-timestamp"),
        request.headers.get("x-slack-signature"),
        body,
        now=time.time(),
    )
    if why is not None:
        log.warning("refused an unsigned Slack request", extra={"reason": why})
        raise Problem(401, "Unauthorized", why)
    return body


SignedBody = Annotated[bytes, Depends(signed_body)]


def _deps(runtime: Any, redis: Any) -> SlackDeps:
    return SlackDeps(runtime.settings, runtime.sessionmaker, Control(redis))


def _form(body: bytes) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}


@router.post("/commands")
async def slash_command(
    request: Request, body: SignedBody, runtime: RuntimeDep, redis: RedisDep
) -> Response:
    await require_schema(request, runtime)
    form = _form(body)
    user, channel = form.get("user_id", ""), form.get("channel_id", "")
    work = asyncio.ensure_future(commands.run(_deps(runtime, redis), user, form.get("text", "")))
    done, _ = await asyncio.wait({work}, timeout=ANSWER_WITHIN)
    if done:
        return JSONResponse(_outcome(work, user).slack())
    # Still confirming a stop: it is committed and in force; its outcome follows.
    _follow(work, runtime.settings, channel, user)
    return JSONResponse(
        Reply(
            ":hourglass_flowing_sand: Recorded and in force; confirming that no request of it "
            "is still on the wire. The outcome follows here.",
        ).slack()
    )


@router.post("/interactions")
async def interaction(
    request: Request, body: SignedBody, runtime: RuntimeDep, redis: RedisDep
) -> Response:
    await require_schema(request, runtime)
    try:
        payload = json.loads(_form(body).get("payload", ""))
        action = payload["actions"][0]
        user = str(payload["user"]["id"])
        channel = str((payload.get("channel") or {}).get("id", ""))
        action_id, value = str(action.get("action_id")), str(action.get("value", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise Problem(400, "Bad request", "not a Slack block_actions payload") from None
    deps = _deps(runtime, redis)
    if action_id == APPROVE_ACTION:
        work = asyncio.ensure_future(commands.approve(deps, user, value))
    elif action_id == CONFIRM_ACTION and value.isdigit():
        work = asyncio.ensure_future(commands.confirm(deps, user, int(value)))
    else:
        return Response(status_code=200)
    await asyncio.wait({work}, timeout=ANSWER_WITHIN)
    _follow(work, runtime.settings, channel, user, ephemeral=True)
    return Response(status_code=200)


def _follow(
    work: Awaitable[Reply], settings: Settings, channel: str, user: str, *, ephemeral: bool = False
) -> None:
    """Post `work`'s reply once it is done: to the person alone (ephemeral) or, for a
    public reply, to the channel the command came from."""

    async def post() -> None:
        try:
            reply = await work
        except Problem as problem:
            reply = Reply(f":warning: {problem.detail}", ok=False)
        except Exception:
            log.exception("a Slack command failed", extra={"slack_user": user})
            reply = FAILED
        client = SlackClient(settings)
        if not client.configured or not channel:
            return
        if ephemeral or not reply.public:
            answer = await client.ephemeral(channel, user, reply.text)
        else:
            answer = await client.post({"text": reply.text}, channel=channel)
        if not answer.ok:
            log.warning("could not post a Slack reply", extra={"error": answer.error})

    task = asyncio.ensure_future(post())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def _outcome(work: asyncio.Future[Reply], user: str) -> Reply:
    """The reply of a command done within Slack's wait; a failure of ours is logged with
    its traceback and answered, never a 500 Slack would show as a timeout."""
    try:
        return work.result()
    except Problem as problem:
        return Reply(f":warning: {problem.detail}", ok=False)
    except Exception:
        log.exception("a Slack command failed", extra={"slack_user": user})
        return FAILED
