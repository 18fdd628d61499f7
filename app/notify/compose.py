"""What a notification says: the Slack message (Block Kit) and the webhook payload. Pure.

Every message names the decision, its severity, the campaign (with a link to its page in
the form), who decided (the person when one acted) and why, and carries the audit event's
sequence, so a reader of the channel can find the record in the log, and a reader of the log
the message in the channel (`outbox_message.slack_ts`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.notify.kinds import SEVERITY, Kind, Severity

# Interactive elements; `app.slack.interactions` answers them.
APPROVE_ACTION = "wavecast_approve"
CONFIRM_ACTION = "wavecast_confirm"

_ICON = {
    Severity.info: ":large_blue_circle:",
    Severity.warning: ":warning:",
    Severity.critical: ":red_circle:",
}

_TITLE: dict[Kind, str] = {
    Kind.approval_requested: "Approval requested",
    Kind.approval_approved: "Campaign approved",
    Kind.approval_voided: "Approval voided by an edit: a draft needs approving again to start",
    Kind.campaign_started: "Campaign started",
    Kind.campaign_resumed: "Campaign resumed",
    Kind.wave_released: "Wave released",
    Kind.check_failed: "Wave check failed: campaign paused",
    Kind.auto_paused: "Campaign paused automatically",
    Kind.provider_halted: "Provider refused our credentials: campaign halted",
    Kind.guard_refused: "Refused by the environment guard",
    Kind.guard_overridden: "Environment guard overridden",
    Kind.campaign_paused: "Campaign paused",
    Kind.campaign_cancelled: "Campaign cancelled",
    Kind.campaign_killed: "Campaign killed",
    Kind.campaign_completed: "Campaign completed",
    Kind.switch_engaged: "Global kill switch engaged: every campaign stopped",
    Kind.switch_released: "Global kill switch released (campaigns stay paused)",
    Kind.confirmation_requested: "Waiting for a second person to confirm",
}

# Slack's limits: a section's text, a field's text, and a message's fallback text.
_SECTION_MAX = 3000
_FIELD_MAX = 2000


@dataclass(frozen=True)
class Notice:
    """One notification, as composed from its audit event and the campaign it is about."""

    kind: Kind
    sequence: int
    occurred_at: datetime
    actor: str
    person: str | None
    channel: str | None
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    campaign_id: str | None
    campaign_name: str | None
    public_url: str
    environment: str
    details: dict[str, Any] | None = field(default=None)

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]

    @property
    def title(self) -> str:
        return _TITLE[self.kind]

    @property
    def link(self) -> str | None:
        if self.campaign_id is None:
            return None
        return f"{self.public_url.rstrip('/')}/ui/campaigns/{self.campaign_id}"

    @property
    def who(self) -> str:
        """The person when one acted; otherwise the actor as the log names it."""
        if self.person:
            return self.person if self.channel is None else f"{self.person} (via {self.channel})"
        return self.actor


def summary(notice: Notice) -> str:
    """The plain-text line: notifications, screen readers and clients without blocks.

    Slack reads `text` as mrkdwn too, so names are escaped as in the blocks: a campaign
    named `<!channel>` must not ping the channel."""
    what = f"[{notice.severity.value.upper()}] {notice.title}"
    if notice.campaign_name or notice.campaign_id:
        what += f": {_escape(notice.campaign_name or notice.campaign_id or '')}"
    return f"{what} (by {_escape(notice.who)}; audit #{notice.sequence})"


def facts(notice: Notice) -> list[tuple[str, str]]:
    """The kind's own facts, beyond who and why."""
    after = notice.after or {}
    out: list[tuple[str, str]] = []
    if notice.kind is Kind.wave_released:
        out.append(("Wave", f"{int(after.get('wave', 0)) + 1} ({after.get('percent', '?')} %)"))
        out.append(("Devices", f"{after.get('target', '?')} of {after.get('audience_size', '?')}"))
    elif notice.kind is Kind.check_failed:
        results = [r for r in after.get("results") or [] if isinstance(r, dict)]
        failed = [r for r in results if r.get("result") == "fail"] or results
        if failed:
            last = failed[-1]
            out.append(("Check", str(last.get("check", "?"))))
            out.append(("Value", str(last.get("value"))))
            if last.get("detail"):
                out.append(("Condition", str(last["detail"])))
    elif notice.kind in (Kind.guard_refused, Kind.guard_overridden):
        findings = after.get("findings") or []
        found = "; ".join(str(f.get("message", f)) for f in findings if isinstance(f, dict))
        if found:
            out.append(("Findings", found))
    elif notice.kind is Kind.approval_requested:
        details = notice.details or {}
        if details.get("reasons"):
            out.append(("Why", "; ".join(str(r) for r in details["reasons"])))
        out.append(("May approve", ", ".join(details.get("may_approve") or []) or "no one yet"))
        if details.get("override_reason"):
            out.append(("Guard override to approve", str(details["override_reason"])))
    elif notice.kind is Kind.approval_voided:
        approved_by = (notice.before or {}).get("approved_by")
        if approved_by:
            out.append(("Had been approved by", str(approved_by)))
    elif notice.kind is Kind.switch_engaged:
        paused = (notice.details or {}).get("paused") or []
        out.append(("Campaigns paused", str(len(paused))))
    elif notice.kind is Kind.confirmation_requested:
        out.append(("Asks to", str(after.get("command", "?"))))
        out.append(("Confirm by", "a different person with the right scope"))
    status = after.get("status")
    if status and (notice.before or {}).get("status"):
        out.append(("Status", f"{notice.before['status']} → {status}"))  # type: ignore[index]
    return out


def slack_message(notice: Notice) -> dict[str, Any]:
    """`text` and `blocks` for chat.postMessage."""
    heading = f"{_ICON[notice.severity]} *{notice.title}*"
    if notice.link:
        heading += f"\n<{notice.link}|{_escape(notice.campaign_name or notice.campaign_id or '')}>"
    fields = [
        ("Severity", notice.severity.value),
        ("By", notice.who),
        *facts(notice),
    ]
    if notice.reason:
        fields.append(("Reason", notice.reason))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(heading, _SECTION_MAX)}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _cut(f"*{name}*\n{_escape(value)}", _FIELD_MAX)}
                for name, value in fields[:10]
            ],
        },
    ]
    buttons = _buttons(notice)
    if buttons:
        blocks.append(
            {"type": "actions", "block_id": f"wavecast-{notice.sequence}", "elements": buttons}
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"audit #{notice.sequence} · {notice.environment} · "
                    f"{notice.occurred_at.strftime('%Y-%m-%d %H:%M:%S UTC')}",
                }
            ],
        }
    )
    return {"text": _cut(summary(notice), _SECTION_MAX), "blocks": blocks}


def answered_message(notice: Notice, answer: str) -> dict[str, Any]:
    """The message once its button has been answered: the same facts, no button."""
    message = slack_message(notice)
    blocks = [b for b in message["blocks"] if b.get("type") != "actions"]
    blocks.insert(
        -1, {"type": "section", "text": {"type": "mrkdwn", "text": _cut(answer, _SECTION_MAX)}}
    )
    return {"text": message["text"], "blocks": blocks}


def approve_value(campaign_id: str, binding: str) -> str:
    """The Approve button's value: the campaign and its binding as the message showed it,
    so a press after an edit is refused instead of approving what no one read."""
    return f"{campaign_id}:{binding}"


def _buttons(notice: Notice) -> list[dict[str, Any]]:
    binding = (notice.details or {}).get("binding")
    if notice.kind is Kind.approval_requested and notice.campaign_id and binding:
        return [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": approve_value(notice.campaign_id, str(binding)),
            }
        ]
    if notice.kind is Kind.confirmation_requested:
        return [
            {
                "type": "button",
                "action_id": CONFIRM_ACTION,
                "text": {"type": "plain_text", "text": "Confirm"},
                "style": "danger",
                "value": str(notice.sequence),
            }
        ]
    return []


def webhook_payload(notice: Notice) -> dict[str, Any]:
    """The JSON a webhook receives (Standard Webhooks' `type`, `timestamp`, `data`)."""
    return {
        "type": notice.kind.value,
        "timestamp": notice.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {
            "audit_sequence": notice.sequence,
            "severity": notice.severity.value,
            "title": notice.title,
            "campaign_id": notice.campaign_id,
            "campaign_name": notice.campaign_name,
            "link": notice.link,
            "actor": notice.actor,
            "person": notice.person,
            "channel": notice.channel,
            "reason": notice.reason,
            "facts": dict(facts(notice)),
            "environment": notice.environment,
        },
    }


def _escape(text: str) -> str:
    # Slack's mrkdwn control characters; anything else is shown as written.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
