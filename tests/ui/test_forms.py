"""The form's pure logic: typed values to an API body, API error paths to inputs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.ui import forms
from app.ui.forms import CampaignForm, Rule, Wave, form_field, parse_data, place, rule_json


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        (Rule("locale", "starts_with", " pl "), "pl"),
        (Rule("tags", "contains_any", "a, b,,c "), ["a", "b", "c"]),
        (Rule("platform", "in", "ios"), ["ios"]),
        (Rule("last_seen", "within_days", "30"), 30),
        (Rule("last_seen", "within_days", "soon"), "soon"),
        (Rule("is_test_device", "eq", "True"), True),
        (Rule("attributes.vip", "exists", "false"), False),
        (Rule("attributes.score", "gt", "3.5"), 3.5),
        (Rule("attributes.tier", "eq", "gold"), "gold"),
        (Rule("attributes.tier", "in", "gold, 3, true"), ["gold", 3, True]),
        (Rule("attributes.n", "eq", "NaN"), "NaN"),
        (Rule("app_version", "gte", "5.10"), "5.10"),
    ],
)
def test_rule_rows_become_conditions(rule: Rule, value: object) -> None:
    assert rule_json(rule) == {"field": rule.field, "op": rule.op, "value": value}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("name", "name"),
        ("content.title", "title"),
        ("content.body", "body"),
        ("content.data.screen", "data"),
        ("content.locales.pl.title", "content"),
        ("content", "content"),
        ("rollout.waves[1].percent", "waves.3"),
        ("rollout.waves.0.hold_seconds", "waves.0"),
        ("rollout.waves[7].percent", "waves"),
        ("rollout.waves", "waves"),
        ("audience", "audience"),
        ("audience.rules.all[0].value", "audience"),
        ("rules.all[0].op", "audience"),
        ("throttle.per_second", "throttle"),
        ("override.reason", "override_reason"),
        ("rollout.local_time", "local_time"),
        ("quiet_hours", "quiet_hours"),
        ("quiet_hours.start", "quiet_hours"),
        ("expires_at", "expires_at"),
        ("priority", "priority"),
        ("body.name", "name"),
        ("failure_threshold_percent", ""),
        ("", ""),
    ],
)
def test_api_paths_land_beside_their_inputs(path: str, field: str) -> None:
    assert form_field(path, wave_rows=[0, 3]) == field


def test_place_keeps_the_path_where_the_input_alone_is_ambiguous() -> None:
    placed = place([("content.title", "looks like test content"), ("audience.rules", "bad op")])
    assert placed == {"title": ["looks like test content"], "audience": ["audience.rules: bad op"]}


def test_data_lines() -> None:
    assert parse_data("screen=statements\n\n a = b=c \n") == (
        {"screen": "statements", "a": "b=c"},
        [],
    )
    assert parse_data("no equals\n=x")[1] == ["line 1: write key=value", "line 2: write key=value"]


def test_blank_rows_are_left_out_and_rows_keep_their_place() -> None:
    form = CampaignForm(
        title="t",
        body="b",
        name="n",
        waves=[Wave("1", "60"), Wave("", ""), Wave("100", "")],
        rules=[Rule(), Rule("platform", "eq", "ios")],
    )
    body, errors = form.to_body()
    assert errors == {}
    assert body["rollout"] == {"waves": [{"percent": "1", "hold_seconds": 60}, {"percent": "100"}]}
    assert body["audience"] == {
        "rules": {"all": [{"field": "platform", "op": "eq", "value": "ios"}]}
    }
    assert form.wave_rows() == [0, 2]


def test_no_rule_is_never_everyone() -> None:
    body, errors = CampaignForm(rules=[Rule()]).to_body()
    assert "audience" in errors
    assert body["audience"] == {"rules": None}
    everyone, errors = CampaignForm(audience_mode="everyone").to_body()
    assert everyone["audience"] == {"rules": {"everyone": True}}
    assert "audience" not in errors


def test_bad_numbers_are_named() -> None:
    _, errors = CampaignForm(throttle="fast", waves=[Wave("100", "1h")]).to_body()
    assert errors["throttle"] == ["a whole number of sends per second"]
    assert errors["waves.0"] == ["hold: whole seconds"]


def test_validate_names_schema_errors_by_input() -> None:
    body, errors = CampaignForm(
        name="n", title="", body="b", rules=[Rule("a", "b", "c")]
    ).validate()
    assert body is None
    assert "title" in errors


def test_override_is_sent_only_when_written() -> None:
    assert "override" not in CampaignForm(override_reason="   ").to_body()[0]
    body = CampaignForm(override_reason=" known test phrase, approved ").to_body()[0]
    assert body["override"] == {"reason": "known test phrase, approved"}


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(
    name=texts,
    title=texts,
    rules=st.lists(st.tuples(texts, texts, texts), min_size=1, max_size=5),
    waves=st.lists(st.tuples(texts, texts), min_size=1, max_size=5),
)
def test_a_form_reads_back_exactly_as_typed(
    name: str, title: str, rules: list[tuple[str, str, str]], waves: list[tuple[str, str]]
) -> None:
    single = {"name": name, "title": title}
    lists = {
        "rule_field": [r[0] for r in rules],
        "rule_op": [r[1] for r in rules],
        "rule_value": [r[2] for r in rules],
        "wave_percent": [w[0] for w in waves],
        "wave_hold": [w[1] for w in waves],
    }
    form = CampaignForm.from_form(single, lists)
    assert (form.name, form.title) == (name, title)
    assert [(r.field, r.op, r.value) for r in form.rules] == rules
    assert [(w.percent, w.hold) for w in form.waves] == waves


def test_rows_are_capped() -> None:
    lists = {"rule_field": ["x"] * 500, "wave_percent": ["1"] * 500}
    form = CampaignForm.from_form({}, lists)
    assert len(form.rules) == forms.MAX_RULES
    assert len(form.waves) == forms.MAX_WAVES


def test_each_guard_finding_has_one_home() -> None:
    placed = place(
        [
            ("content.title", "looks like a keyboard test"),
            ("rollout.waves[0].percent", "first wave too large"),
            ("rollout.waves[1].hold_seconds", "hold too short"),
            ("rollout.waves", "needs two waves"),
            ("content.locales.pl.title", "lorem ipsum"),
        ],
        wave_rows=[0, 2],  # the form's row 1 is blank
    )
    beside, rest = forms.split_guard(placed, rows=3)
    assert beside == {
        "title": ["looks like a keyboard test"],
        "waves.0": ["first wave too large"],
        "waves.2": ["hold too short"],
    }
    assert rest == ["rollout.waves: needs two waves", "content.locales.pl.title: lorem ipsum"]
    # A row the form no longer shows has no input to carry its finding: the verdict does.
    beside, rest = forms.split_guard(placed, rows=1)
    assert "waves.2" not in beside and "hold too short" in rest


def test_timing_fields_become_the_apis() -> None:
    base = {"name": "n", "title": "t", "body": "b", "audience_mode": "everyone"}
    form = CampaignForm(
        **base,
        local_time="09:30",
        quiet_mode="custom",
        quiet_start="22:00",
        quiet_end="07:30",
        expires_at="2030-01-02T18:45",
        priority="critical",
    )
    created, errors = form.validate()
    assert errors == {} and created is not None
    assert created.rollout.local_time == "09:30"
    assert created.quiet_hours_setting() == "22:00-07:30"
    # A datetime-local value has no offset: the form says it is UTC, and reads it so.
    assert created.expires_at == datetime(2030, 1, 2, 18, 45, tzinfo=UTC)
    assert created.priority == "critical"
    # The deployment's quiet hours: the field is left out; off: null.
    default, _ = CampaignForm(**base).validate()
    assert default is not None and default.quiet_hours_setting() is None
    assert default.rollout.local_time is None and default.expires_at is None
    off, _ = CampaignForm(**base, quiet_mode="off").validate()
    assert off is not None and off.quiet_hours_setting() == "off"


@pytest.mark.parametrize(
    ("typed", "field"),
    [
        ({"local_time": "9.30"}, "local_time"),
        ({"quiet_mode": "custom", "quiet_start": "22:00"}, "quiet_hours"),
        ({"quiet_mode": "custom", "quiet_start": "22:00", "quiet_end": "22:00"}, "quiet_hours"),
        ({"quiet_mode": "sometimes"}, "quiet_hours"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"priority": "urgent"}, "priority"),
    ],
)
def test_bad_timing_is_named_beside_its_input(typed: dict[str, str], field: str) -> None:
    form = CampaignForm(name="n", title="t", body="b", audience_mode="everyone", **typed)
    created, errors = form.validate()
    assert created is None
    assert list(errors) == [field], errors
