"""Sending the outbox: the team channel in the order of the log, webhooks alongside.

A worker job (`workers.outbox`) runs `dispatch` every second. Each run claims what is due
(`app.notify.repository`), composes each message from its audit event, sends it, and
records the outcome at once, in a transaction of its own:

- a message Slack acknowledged has its `ts` recorded before anything else happens, so it
  is never sent again (a message is re-sent only when no answer came back: a worker that
  died after posting and before recording, or a timeout after Slack had taken it);
- a transient failure (5xx, a connection refused or timed out, `ratelimited` with its
  Retry-After) is tried again later with a bounded back-off (`app.notify.backoff`); the
  Slack lane then stops for this run, so the messages after it keep their order;
- a permanent refusal (e.g. blocks Slack rejects) fails that message alone.

Nothing here runs inside a decision's transaction or request: a stop has committed and
answered whatever Slack is doing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.models import AuditEvent
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.notify import repository
from app.notify.backoff import Backoff
from app.notify.compose import Notice, answered_message, slack_message, webhook_payload
from app.notify.conditions import approval_waiting
from app.notify.kinds import Kind
from app.notify.models import DeliveryAttempt, OutboxMessage, OutboxStatus
from app.settings import Settings
from app.slack.client import TIMEOUT_SECONDS as SLACK_TIMEOUT_SECONDS
from app.slack.client import SlackAnswer, SlackClient
from app.webhooks.models import Webhook
from app.webhooks.signing import message_id, signed_headers

log = logging.getLogger("wavecast.outbox")

SLACK_BATCH = 10
WEBHOOK_BATCH = 20
WEBHOOK_TIMEOUT_SECONDS = 10.0
# A claim outlives the longest run that holds it: every call's timeout, plus room.
SLACK_LEASE = timedelta(seconds=SLACK_BATCH * 6 + 10)
# The most one message can take: its post and the update of an earlier message (each up to
# the client's timeout) and the transactions around them. A run posts the next message only
# while its claim has that much left, and hands the rest back otherwise: a message posted
# after the claim ran out could be posted again, out of order, by another worker's run.
SLACK_MESSAGE_WORST = timedelta(seconds=2 * SLACK_TIMEOUT_SECONDS + 5)
WEBHOOK_LEASE = timedelta(seconds=WEBHOOK_TIMEOUT_SECONDS * 2 + 10)


@dataclass
class OutboxDeps:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    slack: SlackClient
    http: httpx.AsyncClient
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], datetime] = utcnow

    @classmethod
    def build(
        cls, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> OutboxDeps:
        return cls(
            settings=settings,
            sessionmaker=sessionmaker,
            slack=SlackClient(settings),
            http=httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False),
        )

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0


async def dispatch(deps: OutboxDeps) -> DispatchReport:
    report = DispatchReport()
    # Runs every second on a worker that is also sending: one read, and nothing more when
    # no message is due (neither lane claims a message that is not due yet).
    async with deps.sessionmaker() as session:
        if not await repository.anything_due(session, now=deps.clock()):
            return report
    await send_slack(deps, report)
    await send_webhooks(deps, report)
    return report


# ------------------------------------------------------------------------------ Slack
async def send_slack(deps: OutboxDeps, report: DispatchReport) -> None:
    token = uuid.uuid4().hex
    now = deps.clock()
    async with unit_of_work(deps.sessionmaker) as session:
        rows = await repository.claim_slack(
            session, now=now, limit=SLACK_BATCH, until=now + SLACK_LEASE, token=token
        )
    if not rows:
        return
    notices = await load_notices(deps, rows)
    claim_ends = now + SLACK_LEASE
    for index, row in enumerate(rows):
        assert row.id is not None
        if deps.clock() + SLACK_MESSAGE_WORST > claim_ends:
            async with unit_of_work(deps.sessionmaker) as session:
                await repository.release(session, [r.id for r in rows[index:] if r.id], token)
            return
        if not deps.slack.configured:
            await _finish(
                deps, row, token, status=OutboxStatus.skipped, error="Slack is not configured"
            )
            report.skipped += 1
            continue
        notice = await _prepared(deps, row, token, notices.get(row.id), report)
        if notice is None:
            continue
        started, clock = deps.clock(), time.monotonic()
        answer = await deps.slack.post(slack_message(notice))
        took = _ms(clock)
        if answer.ok:
            slack: dict[str, object] = {
                "slack_ts": answer.ts,
                "slack_channel": answer.channel or deps.slack.channel,
            }
            await _sent(deps, row, token, answer.status_code, started, took, slack, report)
            await _answer_earlier(deps, notice)
            continue
        if answer.permanent:
            await _give_up(deps, row, token, answer, started, took)
            report.failed += 1
            continue
        retry_at = await _retry_or_give_up(deps, row, token, answer, started, took)
        if retry_at is None:
            report.failed += 1
            continue
        report.retried += 1
        # Keep the channel in order: the rest wait behind this one.
        async with unit_of_work(deps.sessionmaker) as session:
            await repository.release(session, [r.id for r in rows[index + 1 :] if r.id], token)
        return


async def _sent(
    deps: OutboxDeps,
    row: OutboxMessage,
    token: str,
    status_code: int | None,
    started: datetime,
    took: int,
    values: dict[str, object],
    report: DispatchReport,
) -> None:
    """Record an acknowledged message first of all: it is never sent again."""
    async with unit_of_work(deps.sessionmaker) as session:
        kept = await repository.finish(
            session,
            row.id or 0,
            token,
            values={
                "status": OutboxStatus.sent,
                "sent_at": deps.clock(),
                "attempts": row.attempts + 1,
                "last_error": None,
                **values,
            },
            attempt=_attempt(row, started, took, "sent", status_code, None, None),
        )
    report.sent += 1
    if not kept:
        log.warning(
            "an outbox message was delivered after its claim ran out",
            extra={"audit_sequence": row.audit_sequence, "destination": row.destination},
        )


# A decision that answers an earlier message's button: that message loses its button and
# says who answered (chat.update). The request's kind, and what the answer says.
_ANSWERS: dict[Kind, tuple[Kind, str]] = {
    Kind.approval_approved: (Kind.approval_requested, ":white_check_mark: Approved"),
    Kind.campaign_resumed: (Kind.confirmation_requested, ":arrow_forward: Resumed"),
    Kind.switch_released: (Kind.confirmation_requested, ":large_green_circle: Released"),
}


async def _answer_earlier(deps: OutboxDeps, notice: Notice) -> None:
    """Update the message whose button this decision answers; cosmetic: a failure is logged
    and nothing retries it."""
    if notice.kind not in _ANSWERS:
        return
    asked_kind, answered = _ANSWERS[notice.kind]
    async with deps.sessionmaker() as session:
        asked = await repository.slack_message_of(
            session,
            kind=asked_kind.value,
            campaign_id=notice.campaign_id,
            before_sequence=notice.sequence,
        )
    if asked is None or asked.id is None or asked.slack_ts is None or asked.slack_channel is None:
        return
    earlier = (await load_notices(deps, [asked])).get(asked.id)
    if earlier is None:
        return
    text = f"{answered} by {notice.who} (audit #{notice.sequence})"
    answer = await deps.slack.update(
        asked.slack_channel, asked.slack_ts, answered_message(earlier, text)
    )
    if not answer.ok:
        log.warning("could not update an answered message", extra={"error": answer.error})


# ---------------------------------------------------------------------------- webhooks
async def send_webhooks(deps: OutboxDeps, report: DispatchReport) -> None:
    token = uuid.uuid4().hex
    now = deps.clock()
    async with unit_of_work(deps.sessionmaker) as session:
        rows = await repository.claim_webhooks(
            session, now=now, limit=WEBHOOK_BATCH, until=now + WEBHOOK_LEASE, token=token
        )
        hooks: dict[uuid.UUID | None, Webhook | None] = {
            row.webhook_id: await session.get(Webhook, row.webhook_id)
            for row in rows
            if row.webhook_id is not None
        }
    if not rows:
        return
    notices = await load_notices(deps, rows)
    await asyncio.gather(
        *(
            _deliver(deps, row, token, hooks.get(row.webhook_id), notices.get(row.id or 0), report)
            for row in rows
        )
    )


async def _deliver(
    deps: OutboxDeps,
    row: OutboxMessage,
    token: str,
    hook: Webhook | None,
    notice: Notice | None,
    report: DispatchReport,
) -> None:
    if hook is None or hook.deleted_at is not None:
        await _finish(
            deps, row, token, status=OutboxStatus.skipped, error="the webhook was deleted"
        )
        report.skipped += 1
        return
    notice = await _prepared(deps, row, token, notice, report)
    if notice is None:
        return
    body = json.dumps(webhook_payload(notice), separators=(",", ":")).encode()
    started, clock = deps.clock(), time.monotonic()
    headers = signed_headers(hook.secret, message_id(row.audit_sequence), started, body)
    status: int | None = None
    error: str | None = None
    try:
        response = await deps.http.post(hook.url, content=body, headers=headers)
        status = response.status_code
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
    took = _ms(clock)
    if status is not None and 200 <= status < 300:
        await _sent(deps, row, token, status, started, took, {}, report)
        return
    answer = SlackAnswer(ok=False, status_code=status, error=error or f"HTTP {status}")
    retry_at = await _retry_or_give_up(deps, row, token, answer, started, took)
    if retry_at is None:
        report.failed += 1
    else:
        report.retried += 1


# ------------------------------------------------------------------------------ shared
async def _prepared(
    deps: OutboxDeps,
    row: OutboxMessage,
    token: str,
    notice: Notice | None,
    report: DispatchReport,
) -> Notice | None:
    """The notice to send, or None when the row is settled without sending: its audit event
    is gone (failed), or it is an approval request and no approval is awaited now (skipped)."""
    if notice is None:
        await _finish(deps, row, token, status=OutboxStatus.failed, error="audit event not found")
        report.failed += 1
        return None
    if notice.kind is not Kind.approval_requested:
        return notice
    async with deps.sessionmaker() as session:
        facts = await approval_waiting(session, deps.settings, row)
    if facts is None:
        await _finish(deps, row, token, status=OutboxStatus.skipped, error="no approval is awaited")
        report.skipped += 1
        return None
    return replace(notice, details=facts)


async def _retry_or_give_up(
    deps: OutboxDeps,
    row: OutboxMessage,
    token: str,
    answer: SlackAnswer,
    started: datetime,
    took: int,
) -> datetime | None:
    attempts = row.attempts + 1
    retry_at = deps.backoff.next_attempt(attempts, deps.clock(), answer.retry_after)
    if retry_at is None:
        await _give_up(deps, row, token, answer, started, took)
        return None
    async with unit_of_work(deps.sessionmaker) as session:
        await repository.finish(
            session,
            row.id or 0,
            token,
            values={"attempts": attempts, "next_attempt_at": retry_at, "last_error": answer.error},
            attempt=_attempt(
                row, started, took, "retry", answer.status_code, answer.error, retry_at
            ),
        )
    log.info(
        "outbox message to be tried again",
        extra={
            "audit_sequence": row.audit_sequence,
            "destination": row.destination,
            "error": answer.error,
            "retry_at": retry_at.isoformat(),
        },
    )
    return retry_at


async def _give_up(
    deps: OutboxDeps,
    row: OutboxMessage,
    token: str,
    answer: SlackAnswer,
    started: datetime,
    took: int,
) -> None:
    async with unit_of_work(deps.sessionmaker) as session:
        await repository.finish(
            session,
            row.id or 0,
            token,
            values={
                "status": OutboxStatus.failed,
                "attempts": row.attempts + 1,
                "last_error": answer.error,
            },
            attempt=_attempt(row, started, took, "failed", answer.status_code, answer.error, None),
        )
    log.error(
        "outbox message failed",
        extra={
            "audit_sequence": row.audit_sequence,
            "destination": row.destination,
            "error": answer.error,
        },
    )


async def _finish(
    deps: OutboxDeps, row: OutboxMessage, token: str, *, status: OutboxStatus, error: str
) -> None:
    async with unit_of_work(deps.sessionmaker) as session:
        await repository.finish(
            session,
            row.id or 0,
            token,
            values={"status": status, "last_error": error},
            attempt=None,
        )


def _attempt(
    row: OutboxMessage,
    started: datetime,
    took: int,
    outcome: str,
    status_code: int | None,
    error: str | None,
    retry_at: datetime | None,
) -> DeliveryAttempt:
    return DeliveryAttempt(
        message_id=row.id or 0,
        attempt=row.attempts + 1,
        started_at=started,
        duration_ms=took,
        outcome=outcome,
        status_code=status_code,
        error=error,
        retry_at=retry_at,
    )


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)


async def load_notices(deps: OutboxDeps, rows: Sequence[OutboxMessage]) -> dict[int, Notice]:
    """Each row's notice, composed from its audit event and its campaign's current name."""
    async with deps.sessionmaker() as session:
        events = await repository.events(session, [r.audit_sequence for r in rows])
        names = await repository.campaign_names(
            session, [r.campaign_id for r in rows if r.campaign_id]
        )
    out: dict[int, Notice] = {}
    for row in rows:
        event = events.get(row.audit_sequence)
        if event is None or row.id is None:
            continue
        out[row.id] = notice_of(deps.settings, row, event, names)
    return out


def notice_of(
    settings: Settings, row: OutboxMessage, event: AuditEvent, names: dict[str, str]
) -> Notice:
    return Notice(
        kind=Kind(row.kind),
        sequence=row.audit_sequence,
        occurred_at=event.occurred_at,
        actor=event.actor,
        person=getattr(event, "person_name", None),
        channel=getattr(event, "channel", None),
        reason=event.reason,
        before=event.before,
        after=event.after,
        campaign_id=row.campaign_id,
        campaign_name=names.get(row.campaign_id or ""),
        public_url=settings.public_url,
        environment=settings.env.value,
        details=row.details,
    )
