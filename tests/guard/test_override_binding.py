"""The override binding and the worker's send-time guard check: pure, no I/O."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from app.campaigns.models import Campaign, CampaignKind
from app.campaigns.schemas import Content
from app.guard import override as override_module
from app.guard.lint import LintFinding
from app.guard.override import judge_content, standing_reason
from app.guard.send_check import send_refusal
from app.rollout.planner import WaveSpec
from app.settings import Environment, Settings

INCIDENT = Content(title="ęśąćż", body="test wiadomości push").model_dump(mode="json")
QUIZ = Content(title="Test your knowledge", body="Take our quiz about saving.").model_dump(
    mode="json"
)
CLEAN = Content(
    title="Your statement is ready", body="Log in to see your November statement."
).model_dump(mode="json")
STAGED = (WaveSpec(Decimal("1"), 600), WaveSpec(Decimal("100"), 0))
REASON = "Polish keyboard QA for the new font, approved by J. Nowak"


def settings(env: Environment = Environment.production, **extra: Any) -> Settings:
    return Settings().model_copy(update={"env": env, **extra})


@dataclass
class Row:
    """A campaign row as the worker reads it."""

    content: dict[str, Any]
    kind: str = "live"
    guard_override_reason: str | None = None
    guard_override_hash: str | None = None
    waves: tuple[WaveSpec, ...] = field(default=STAGED)


def overridden(content: dict[str, Any], *, approved: dict[str, Any] | None = None) -> Row:
    """A row overridden for `approved` (default: its own content)."""
    return Row(
        content=content,
        guard_override_reason=REASON,
        guard_override_hash=judge_content(approved if approved is not None else content).binding,
    )


def refusal(row: Row, conf: Settings | None = None) -> str | None:
    return send_refusal(conf or settings(), row, row.waves)


# ---------------------------------------------------------------- the binding
def test_the_binding_is_a_sha256_hex_digest_and_deterministic() -> None:
    first, second = judge_content(INCIDENT), judge_content(copy.deepcopy(INCIDENT))
    assert first == second
    assert len(first.binding) == 64 and int(first.binding, 16) >= 0
    assert {f.code for f in first.findings} == {"diacritics_only", "placeholder_word"}


def test_the_binding_ignores_key_order_and_a_json_round_trip() -> None:
    reordered = dict(reversed(list(INCIDENT.items())))
    through_json = json.loads(json.dumps(INCIDENT))
    assert judge_content(reordered).binding == judge_content(INCIDENT).binding
    assert judge_content(through_json).binding == judge_content(INCIDENT).binding


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "title": lambda c: c.update(title=c["title"] + "!"),
    "body": lambda c: c.update(body=c["body"] + " teraz"),
    "one character of the body": lambda c: c.update(body=c["body"].replace("push", "pusz")),
    "a data value": lambda c: c.update(data={"screen": "offers"}),
    "the deep link": lambda c: c.update(deep_link="bank://offers"),
    "an iOS subtitle": lambda c: c.update(ios={"subtitle": "Nowość"}),
    "an Android image (not linted)": lambda c: c.update(
        android={"image_url": "https://cdn.example/test.png"}
    ),
    "the TTL (not linted)": lambda c: c.update(ttl_seconds=60),
    "a locale variant": lambda c: c.update(locales={"en": {"title": "ęśąćż", "body": "test"}}),
}


@pytest.mark.parametrize("what", list(MUTATIONS))
def test_any_change_to_the_content_changes_the_binding(what: str) -> None:
    changed = copy.deepcopy(INCIDENT)
    MUTATIONS[what](changed)
    Content.model_validate(changed)
    assert judge_content(changed).binding != judge_content(INCIDENT).binding


def _lint_returning(monkeypatch: pytest.MonkeyPatch, findings: list[LintFinding]) -> None:
    monkeypatch.setattr(override_module, "lint_content", lambda _fields: findings)


def _finding(
    code: str = "placeholder_word",
    field: str = "title",
    match: str = "Test",
    message: str = "looks like a test",
) -> LintFinding:
    return LintFinding(code=code, field=field, match=match, message=message)


def test_the_binding_covers_each_finding_by_code_field_and_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def binding(*findings: LintFinding) -> str:
        _lint_returning(monkeypatch, list(findings))
        return judge_content(QUIZ).binding

    base = binding(_finding())
    assert binding(_finding(code="test_marker")) != base
    assert binding(_finding(field="body")) != base
    assert binding(_finding(match="Tes")) != base
    # A new rule finding something more in the same content: not what was overridden.
    assert binding(_finding(), _finding(code="template_variable", match="{{x}}")) != base
    assert binding() != base


def test_the_binding_ignores_message_wording_and_finding_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def binding(*findings: LintFinding) -> str:
        _lint_returning(monkeypatch, list(findings))
        return judge_content(QUIZ).binding

    one, two = _finding(), _finding(code="lorem_ipsum", field="body", match="lorem")
    assert binding(one, two) == binding(two, one)
    assert binding(one) == binding(_finding(message="reworded in a later release"))


def test_invalid_content_cannot_be_judged() -> None:
    with pytest.raises(ValidationError, match="body"):
        judge_content({"title": "no body"})


@pytest.mark.parametrize(
    ("reason", "binding", "holds"),
    [
        (REASON, "own", True),
        (REASON, "other", False),
        (REASON, None, False),
        (None, "own", False),
        ("", "own", False),
        ("   ", "own", False),
    ],
)
def test_an_override_stands_only_with_a_reason_and_the_current_binding(
    reason: str | None, binding: str | None, holds: bool
) -> None:
    judgement = judge_content(INCIDENT)
    stored = {"own": judgement.binding, "other": judge_content(QUIZ).binding, None: None}[binding]
    assert standing_reason(reason, stored, judgement) == (reason if holds else None)


# ---------------------------------------------------------------- rule 2 at send time
def test_clean_content_sends() -> None:
    assert refusal(Row(content=CLEAN)) is None


def test_test_content_without_an_override_is_refused_with_its_reasons() -> None:
    reason = refusal(Row(content=INCIDENT))
    assert reason is not None
    assert reason.startswith("environment guard: content looks like test content: ")
    assert "diacritic" in reason
    assert "override" not in reason


def test_an_override_bound_to_this_content_lets_it_send() -> None:
    assert refusal(overridden(INCIDENT)) is None


def test_the_incident_an_override_for_other_content_is_no_override() -> None:
    """Overridden for the quiz, then the content became the test message."""
    reason = refusal(overridden(INCIDENT, approved=QUIZ))
    assert reason is not None
    assert "content looks like test content" in reason
    assert "override on record was given for other content" in reason


@pytest.mark.parametrize("what", list(MUTATIONS))
def test_any_edit_after_the_override_voids_it_at_send_time(what: str) -> None:
    edited = copy.deepcopy(INCIDENT)
    MUTATIONS[what](edited)
    assert refusal(overridden(edited, approved=INCIDENT)) is not None


def test_an_override_without_a_binding_is_no_override() -> None:
    row = Row(content=INCIDENT, guard_override_reason=REASON, guard_override_hash=None)
    assert refusal(row) is not None


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_binding_without_a_written_reason_is_no_override(reason: str) -> None:
    row = overridden(INCIDENT)
    row.guard_override_reason = reason
    assert refusal(row) is not None


def test_a_hash_that_is_not_a_binding_is_no_override() -> None:
    row = Row(content=INCIDENT, guard_override_reason=REASON, guard_override_hash="0" * 64)
    assert refusal(row) is not None


def test_findings_the_override_never_saw_void_it(monkeypatch: pytest.MonkeyPatch) -> None:
    row = overridden(QUIZ)
    assert refusal(row) is None
    monkeypatch.setattr(
        override_module,
        "lint_content",
        lambda _fields: [_finding(), _finding(code="lorem_ipsum", field="body", match="quiz")],
    )
    assert refusal(row) is not None


def test_a_refusal_names_at_most_three_findings() -> None:
    content = Content(
        title="ęśąćż",
        body="test wiadomości push",
        locales={"de": {"title": "asdf", "body": "lorem ipsum"}},
    ).model_dump(mode="json")
    assert len(judge_content(content).findings) > 3
    reason = refusal(Row(content=content))
    assert reason is not None
    assert reason.count("; ") == 2


# ---------------------------------------------------------------- rule 4 at send time
@pytest.mark.parametrize(
    ("waves", "expected"),
    [
        ((WaveSpec(Decimal("100"), 0),), "at least two waves"),
        ((), "at least two waves"),
        ((WaveSpec(Decimal("50"), 600), WaveSpec(Decimal("100"), 0)), "wave 1 is 50%"),
        ((WaveSpec(Decimal("1"), 60), WaveSpec(Decimal("100"), 0)), "wave 1 holds 1 min"),
        (
            (WaveSpec(Decimal("1"), 600), WaveSpec(Decimal("10"), 0), WaveSpec(Decimal("100"), 0)),
            "wave 2 holds 0 s",
        ),
    ],
)
def test_an_unstaged_live_rollout_is_refused(waves: tuple[WaveSpec, ...], expected: str) -> None:
    reason = refusal(Row(content=CLEAN, waves=waves))
    assert reason is not None
    assert reason.startswith("environment guard: the rollout is not staged: ")
    assert expected in reason


def test_no_override_lifts_the_staging_rule() -> None:
    row = overridden(INCIDENT)
    row.waves = (WaveSpec(Decimal("100"), 0),)
    reason = refusal(row)
    assert reason is not None
    assert "not staged" in reason and "test content" not in reason


def test_both_rules_are_named_when_both_break() -> None:
    reason = refusal(Row(content=INCIDENT, waves=(WaveSpec(Decimal("100"), 0),)))
    assert reason is not None
    assert "not staged" in reason and "content looks like test content" in reason


def test_the_staging_policy_follows_the_settings() -> None:
    row = Row(content=CLEAN, waves=(WaveSpec(Decimal("10"), 120), WaveSpec(Decimal("100"), 0)))
    assert refusal(row) is not None
    loose = settings(max_first_wave_percent=Decimal("10"), min_hold_seconds=120)
    assert refusal(row, loose) is None


def test_a_misconfigured_policy_refuses_rather_than_raises() -> None:
    broken = settings(max_first_wave_percent=Decimal("0"))
    reason = refusal(Row(content=CLEAN), broken)
    assert reason is not None and "misconfigured" in reason


# ---------------------------------------------------------------- scope of the rules
@pytest.mark.parametrize("env", [Environment.development, Environment.staging])
def test_outside_production_the_rules_advise_only(env: Environment) -> None:
    row = Row(content=INCIDENT, waves=(WaveSpec(Decimal("100"), 0),))
    assert refusal(row, settings(env)) is None


def test_a_test_campaign_is_neither_linted_nor_staged() -> None:
    row = Row(content=INCIDENT, kind="test", waves=(WaveSpec(Decimal("100"), 0),))
    assert refusal(row) is None


@pytest.mark.parametrize("env", list(Environment))
@pytest.mark.parametrize("kind", ["LIVE", "", "broadcast"])
def test_an_unknown_kind_is_refused_everywhere(env: Environment, kind: str) -> None:
    reason = refusal(Row(content=CLEAN, kind=kind), settings(env))
    assert reason is not None and "unknown campaign kind" in reason


@pytest.mark.parametrize("env", list(Environment))
@pytest.mark.parametrize(
    "content",
    [
        {"title": "no body"},
        {**CLEAN, "unexpected": "field"},
        {**CLEAN, "title": ""},
        {**CLEAN, "data": {"aps": "reserved"}},
        {**CLEAN, "title": 42},
    ],
)
def test_content_the_guard_cannot_read_is_refused_everywhere(
    env: Environment, content: dict[str, Any]
) -> None:
    reason = refusal(Row(content=content), settings(env))
    assert reason is not None and "not valid campaign content" in reason


def test_a_campaign_row_is_what_the_check_reads() -> None:
    campaign = Campaign(
        name="quiz",
        kind=CampaignKind.live,
        content=QUIZ,
        audience_rules={"everyone": True},
        throttle_per_second=10,
        failure_threshold_percent=Decimal("5"),
        rotation=0,
        created_by="test",
    )
    assert send_refusal(settings(), campaign, STAGED) is not None
    campaign.guard_override_reason = REASON
    campaign.guard_override_hash = judge_content(QUIZ).binding
    assert send_refusal(settings(), campaign, STAGED) is None
