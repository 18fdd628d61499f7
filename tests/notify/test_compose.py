"""Every kind composes into a message Slack takes: severity, campaign and link, who and why,
the audit sequence; and into a webhook payload with the same facts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.notify.compose import (
    APPROVE_ACTION,
    CONFIRM_ACTION,
    Notice,
    answered_message,
    slack_message,
    summary,
    webhook_payload,
)
from app.notify.kinds import SEVERITY, Kind

AT = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
CAMPAIGN = "6f1c2b1e-0000-4000-8000-000000000001"


def notice(kind: Kind, **overrides: object) -> Notice:
    fields: dict[str, object] = {
        "kind": kind,
        "sequence": 42,
        "occurred_at": AT,
        "actor": "key:1234 (on-call)",
        "person": "Ada Lovelace",
        "channel": "slack",
        "reason": "wrong segment",
        "before": {"status": "running"},
        "after": {"status": "killed"},
        "campaign_id": CAMPAIGN,
        "campaign_name": "November statement",
        "public_url": "https://wavecast.bank.example/",
        "environment": "production",
    }
    fields.update(overrides)
    return Notice(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_says_what_how_bad_which_campaign_who_why_and_where_in_the_log(
    kind: Kind,
) -> None:
    message = slack_message(notice(kind))
    text = json.dumps(message["blocks"])
    assert "audit #42" in message["text"] and "audit #42" in text
    assert SEVERITY[kind].value.upper() in message["text"]
    assert f"https://wavecast.bank.example/ui/campaigns/{CAMPAIGN}|November statement" in text
    assert "Ada Lovelace (via slack)" in text
    assert "wrong segment" in text
    assert "production" in text
    for block in message["blocks"]:
        if block["type"] == "section" and "fields" in block:
            assert len(block["fields"]) <= 10
            assert all(len(f["text"]) <= 2000 for f in block["fields"])
    payload = webhook_payload(notice(kind))
    assert payload["type"] == kind.value
    assert payload["data"]["audit_sequence"] == 42
    assert payload["data"]["link"] == f"https://wavecast.bank.example/ui/campaigns/{CAMPAIGN}"
    assert payload["timestamp"] == "2026-12-06T09:30:00Z"


BINDING = "ab" * 32


def test_buttons_only_where_a_person_must_answer() -> None:
    def buttons(kind: Kind, **overrides: object) -> list[tuple[str, str]]:
        return [
            (e["action_id"], e["value"])
            for b in slack_message(notice(kind, **overrides))["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
        ]

    def actions(kind: Kind) -> list[str]:
        return [action for action, _ in buttons(kind, details={"binding": BINDING})]

    # The Approve button carries the version of the campaign the message showed; a request
    # composed without one has no button (nothing would say what it approves).
    assert buttons(Kind.approval_requested, details={"binding": BINDING}) == [
        (APPROVE_ACTION, f"{CAMPAIGN}:{BINDING}")
    ]
    assert buttons(Kind.approval_requested) == []
    assert actions(Kind.confirmation_requested) == [CONFIRM_ACTION]
    assert all(
        actions(k) == []
        for k in Kind
        if k not in (Kind.approval_requested, Kind.confirmation_requested)
    )
    answered = answered_message(
        notice(Kind.approval_requested, details={"binding": BINDING}), "Approved by Grace"
    )
    assert all(b["type"] != "actions" for b in answered["blocks"])
    assert "Approved by Grace" in json.dumps(answered["blocks"])


def test_the_system_is_named_when_no_person_acted_and_a_switch_has_no_campaign() -> None:
    n = notice(
        Kind.switch_engaged,
        person=None,
        channel=None,
        actor="system",
        campaign_id=None,
        campaign_name=None,
    )
    assert (
        summary(n)
        == "[CRITICAL] Global kill switch engaged: every campaign stopped (by system; audit #42)"
    )
    assert n.link is None


def test_names_in_the_plain_text_line_are_escaped_as_in_the_blocks() -> None:
    n = notice(
        Kind.approval_requested, campaign_name="<!channel> & <@U0BOSS>", person="Eve <!here>"
    )
    message = slack_message(n)
    assert message["text"] == (
        "[INFO] Approval requested: &lt;!channel&gt; &amp; &lt;@U0BOSS&gt; "
        "(by Eve &lt;!here&gt; (via slack); audit #42)"
    )
    no_name = notice(Kind.campaign_paused, campaign_name=None, person=None, actor="<!everyone>")
    assert "<" not in slack_message(no_name)["text"]


@given(st.text(max_size=5000))
def test_any_reason_fits_slacks_limits_and_cannot_forge_a_link(reason: str) -> None:
    message = slack_message(
        notice(Kind.campaign_paused, reason=reason, campaign_name=reason[:200], person=reason[:200])
    )
    assert "<" not in message["text"] and ">" not in message["text"]
    for block in message["blocks"]:
        if block["type"] == "section":
            for item in block.get("fields", []):
                assert len(item["text"]) <= 2000
                assert "<" not in item["text"]
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
    assert len(message["text"]) <= 3000
