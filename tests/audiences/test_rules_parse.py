"""Parsing fails closed, names every bad node by path, and round-trips what it accepts."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audiences.rules import (
    AllOf,
    AnyOf,
    Condition,
    Everyone,
    Not,
    Rule,
    RuleError,
    RuleErrors,
    evaluate,
    parse_rules,
)
from tests.audiences.test_rules_sql import rule_trees

IOS = {"field": "platform", "op": "eq", "value": "ios"}
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _errors(raw: object) -> list[tuple[str, str]]:
    with pytest.raises(RuleErrors) as caught:
        parse_rules(raw)
    assert caught.value.errors, "RuleErrors must carry at least one error"
    for error in caught.value.errors:
        assert isinstance(error, RuleError)
        assert isinstance(error, ValueError)
    return [(error.path, error.message) for error in caught.value.errors]


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = IOS
    for _ in range(depth - 1):
        node = {"not": node}
    return node


def _canonical(raw: object) -> str:
    return json.dumps(raw, sort_keys=True)


# --------------------------------------------------------------------------------------------
# Every failure class, with its exact path


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        # not an object / nothing said
        ([], "rules", "rules must be an object"),
        (None, "rules", "rules must be an object"),
        ("everyone", "rules", "rules must be an object"),
        (1, "rules", "rules must be an object"),
        ({}, "rules", "an empty object is not a rule"),
        ({"all": []}, "rules.all", '"all" must be a non-empty list of rules'),
        ({"any": []}, "rules.any", '"any" must be a non-empty list of rules'),
        ({"all": IOS}, "rules.all", '"all" must be a non-empty list of rules'),
        ({"not": []}, "rules.not", "must be an object"),
        ({"not": {}}, "rules.not", "an empty object is not a rule"),
        ({"all": [IOS, {}]}, "rules.all[1]", "an empty object is not a rule"),
        ({"all": [IOS, "platform"]}, "rules.all[1]", "must be an object"),
        # everyone: only at the root, only true, only alone
        ({"everyone": False}, "rules.everyone", '"everyone" must be exactly true'),
        ({"everyone": 1}, "rules.everyone", '"everyone" must be exactly true'),
        ({"everyone": "true"}, "rules.everyone", '"everyone" must be exactly true'),
        ({"everyone": True, "all": [IOS]}, "rules", '{"everyone": true} stands alone'),
        ({"all": [{"everyone": True}]}, "rules.all[0]", "allowed only as the whole rule"),
        ({"not": {"everyone": True}}, "rules.not", "allowed only as the whole rule"),
        ({"any": [IOS, {"not": {"everyone": True}}]}, "rules.any[1].not", "whole rule"),
        # node shape
        ({"all": [IOS], "extra": 1}, "rules", 'unknown key "extra"'),
        ({**IOS, "colour": "red"}, "rules", 'unknown key "colour"'),
        ({"all": [IOS], **IOS}, "rules", 'exactly one thing; found keys "all", "field"'),
        ({"all": [IOS], "not": IOS}, "rules", 'exactly one thing; found keys "all", "not"'),
        ({"field": "platform", "op": "eq"}, "rules", '"value" missing'),
        ({"value": "ios"}, "rules", '"field" and "op" missing'),
        # field
        ({"field": "colour", "op": "eq", "value": "red"}, "rules.field", 'unknown field "colour"'),
        ({"field": "attributes", "op": "eq", "value": "x"}, "rules.field", "unknown field"),
        ({"field": "Platform", "op": "eq", "value": "ios"}, "rules.field", "unknown field"),
        ({"field": 3, "op": "eq", "value": "ios"}, "rules.field", "field must be a string"),
        ({"field": "attributes.a b", "op": "eq", "value": 1}, "rules.field", "attribute name"),
        ({"field": "attributes.", "op": "eq", "value": 1}, "rules.field", "attribute name"),
        ({"field": "attributes." + "k" * 65, "op": "exists", "value": True}, "rules.field", "1-64"),
        ({"field": 'attributes.a"b', "op": "eq", "value": 1}, "rules.field", "attribute name"),
        # operator
        (
            {"field": "platform", "op": "gt", "value": "ios"},
            "rules.op",
            'operator "gt" does not apply to field "platform"; use eq, ne or in',
        ),
        ({"field": "platform", "op": "EQ", "value": "ios"}, "rules.op", "does not apply"),
        ({"field": "tags", "op": "eq", "value": "vip"}, "rules.op", "use contains, contains_any"),
        ({"field": "user_id", "op": "ne", "value": "u1"}, "rules.op", "use eq or in"),
        ({"field": "device_id", "op": "eq", "value": "x"}, "rules.op", "use in"),
        ({"field": "last_seen", "op": "gt", "value": 3}, "rules.op", "use within_days or"),
        ({"field": "locale", "op": None, "value": "pl"}, "rules.op", "operator must be a string"),
        # values
        ({"field": "platform", "op": "eq", "value": "web"}, "rules.value", '"ios" or "android"'),
        ({"field": "platform", "op": "eq", "value": ["ios"]}, "rules.value", '"ios" or'),
        ({"field": "platform", "op": "in", "value": "ios"}, "rules.value", "non-empty list"),
        ({"field": "platform", "op": "in", "value": []}, "rules.value", "non-empty list"),
        ({"field": "platform", "op": "in", "value": ["ios", "web"]}, "rules.value[1]", '"ios"'),
        ({"field": "locale", "op": "eq", "value": "polish"}, "rules.value", "language tag"),
        ({"field": "locale", "op": "starts_with", "value": "p"}, "rules.value", "language tag"),
        ({"field": "locale", "op": "starts_with", "value": "pl-"}, "rules.value", "language"),
        ({"field": "locale", "op": "eq", "value": "pl%"}, "rules.value", "language tag"),
        ({"field": "timezone", "op": "eq", "value": "Mars/Base"}, "rules.value", "IANA"),
        ({"field": "timezone", "op": "eq", "value": "../../etc/passwd"}, "rules.value", "IANA"),
        (
            {"field": "app_version", "op": "gte", "value": "latest"},
            "rules.value",
            'value for "app_version" must be a version such as "5.12.1"',
        ),
        ({"field": "app_version", "op": "gte", "value": 5}, "rules.value", "a version such"),
        ({"field": "app_version", "op": "in", "value": ["1", "x"]}, "rules.value[1]", "version"),
        ({"field": "tags", "op": "contains", "value": ""}, "rules.value", "1-64 characters"),
        ({"field": "tags", "op": "contains", "value": " vip"}, "rules.value", "surrounding"),
        ({"field": "tags", "op": "contains", "value": ["vip"]}, "rules.value", "a tag"),
        ({"field": "tags", "op": "contains_none", "value": []}, "rules.value", "non-empty"),
        ({"field": "tags", "op": "contains_all", "value": ["a", 1]}, "rules.value[1]", "a tag"),
        ({"field": "attributes.n", "op": "eq", "value": None}, "rules.value", "string, number"),
        ({"field": "attributes.n", "op": "eq", "value": {}}, "rules.value", "string, number"),
        ({"field": "attributes.n", "op": "eq", "value": math.nan}, "rules.value", "finite"),
        ({"field": "attributes.n", "op": "gt", "value": math.inf}, "rules.value", "finite"),
        ({"field": "attributes.n", "op": "eq", "value": 10**400}, "rules.value", "finite"),
        ({"field": "attributes.n", "op": "gt", "value": True}, "rules.value", "string or a"),
        ({"field": "attributes.n", "op": "exists", "value": 1}, "rules.value", "true or false"),
        ({"field": "attributes.n", "op": "in", "value": [1, None]}, "rules.value[1]", "string"),
        ({"field": "last_seen", "op": "within_days", "value": 0}, "rules.value", "1 to 3650"),
        ({"field": "last_seen", "op": "within_days", "value": 3651}, "rules.value", "1 to"),
        ({"field": "last_seen", "op": "within_days", "value": 7.0}, "rules.value", "whole"),
        ({"field": "last_seen", "op": "within_days", "value": True}, "rules.value", "whole"),
        ({"field": "last_seen", "op": "within_days", "value": "7"}, "rules.value", "whole"),
        ({"field": "user_id", "op": "eq", "value": ""}, "rules.value", "1-256 characters"),
        ({"field": "user_id", "op": "eq", "value": 42}, "rules.value", "user id"),
        ({"field": "user_id", "op": "eq", "value": "a\x00b"}, "rules.value", "NUL"),
        ({"field": "user_id", "op": "eq", "value": "\ud800"}, "rules.value", "Unicode"),
        ({"field": "is_test_device", "op": "eq", "value": 1}, "rules.value", "true or false"),
        ({"field": "is_test_device", "op": "eq", "value": "true"}, "rules.value", "true or"),
        ({"field": "device_id", "op": "in", "value": ["nope"]}, "rules.value[0]", "device id"),
        (
            {"field": "device_id", "op": "in", "value": [uuid.UUID(int=1).hex]},
            "rules.value[0]",
            "device id",
        ),
        # limits
        ({"field": "user_id", "op": "eq", "value": "u" * 257}, "rules.value", "257 characters"),
        ({"field": "attributes.s", "op": "eq", "value": "s" * 257}, "rules.value", "at most 256"),
        ({"field": "x" * 300, "op": "eq", "value": 1}, "rules.field", "unknown field"),
        (
            {"field": "user_id", "op": "in", "value": [f"u{n}" for n in range(10_001)]},
            "rules.value",
            'value for "user_id" has 10,001 items; at most 10,000 are allowed',
        ),
        (_nested(17), "rules" + ".not" * 16, "nested more than 16 levels deep"),
        ({"all": [IOS] * 1000}, "rules", "more than 1,000 nodes"),
    ],
)
def test_bad_rules_are_refused_at_their_path(raw: object, path: str, message: str) -> None:
    errors = _errors(raw)
    assert any(p == path and message in m for p, m in errors), errors


def test_unknown_field_lists_the_fields() -> None:
    [(path, message)] = _errors({"field": "colour", "op": "eq", "value": "red"})
    assert path == "rules.field"
    assert message == (
        'unknown field "colour"; fields are: platform, locale, timezone, app_version, tags, '
        "attributes.<key>, last_seen, user_id, is_test_device, device_id"
    )


def test_every_error_is_reported_not_just_the_first() -> None:
    errors = _errors(
        {
            "all": [
                IOS,
                {"field": "colour", "op": "eq", "value": "red"},
                {"field": "platform", "op": "gt", "value": "ios"},
                {"any": []},
                {"not": {"field": "tags", "op": "contains_any", "value": ["ok", "", 3]}},
                {"everyone": True},
            ]
        }
    )
    assert [path for path, _ in errors] == [
        "rules.all[1].field",
        "rules.all[2].op",
        "rules.all[3].any",
        "rules.all[4].not.value[1]",
        "rules.all[4].not.value[2]",
        "rules.all[5]",
    ]


def test_errors_stop_at_a_bound() -> None:
    errors = _errors({"field": "user_id", "op": "in", "value": [1] * 500})
    assert len(errors) == 101
    assert errors[-1] == ("rules", "too many errors; only the first 100 are listed")


def test_rule_errors_reads_as_one_message() -> None:
    with pytest.raises(RuleErrors) as caught:
        parse_rules({"all": [{"field": "colour", "op": "eq", "value": 1}, {}]})
    assert str(caught.value).startswith('rules.all[0].field: unknown field "colour"')
    assert "; rules.all[1]: an empty object is not a rule" in str(caught.value)


@pytest.mark.parametrize(
    "raw",
    [
        _nested(16),
        {"all": [IOS] * 999},
        {"field": "user_id", "op": "eq", "value": "u" * 256},
        {"field": "user_id", "op": "in", "value": [f"u{n}" for n in range(10_000)]},
        {"field": "last_seen", "op": "within_days", "value": 3650},
    ],
)
def test_limits_are_inclusive(raw: dict[str, Any]) -> None:
    assert parse_rules(raw).to_json() == raw


# --------------------------------------------------------------------------------------------
# What parses, and how it reads back


def test_everyone_is_spelled_out() -> None:
    assert parse_rules({"everyone": True}) == Everyone()
    assert Everyone().to_json() == {"everyone": True}


def test_the_ast_is_typed_and_immutable() -> None:
    rule = parse_rules(
        {
            "all": [
                IOS,
                {"any": [{"not": {"field": "tags", "op": "contains", "value": "vip"}}]},
                {"field": "device_id", "op": "in", "value": [str(uuid.UUID(int=7)).upper()]},
            ]
        }
    )
    assert rule == AllOf(
        (
            Condition("platform", "eq", "ios"),
            AnyOf((Not(Condition("tags", "contains", "vip")),)),
            Condition("device_id", "in", (uuid.UUID(int=7),)),
        )
    )
    with pytest.raises(AttributeError):
        rule.children = ()  # type: ignore[misc]
    # Device ids read back in canonical (lower-case) spelling.
    assert rule.to_json()["all"][2]["value"] == [str(uuid.UUID(int=7))]


def test_condition_names_its_attribute() -> None:
    assert Condition("attributes.a.b", "exists", True).attribute == "a.b"
    assert Condition("platform", "eq", "ios").attribute is None


@pytest.mark.parametrize(
    "raw",
    [
        IOS,
        {"field": "locale", "op": "starts_with", "value": "pl_PL"},
        {"field": "timezone", "op": "in", "value": ["Europe/Warsaw", "UTC"]},
        {"field": "app_version", "op": "lt", "value": "5.12.1-beta"},
        {"field": "tags", "op": "contains_all", "value": ["vip", "beta"]},
        {"field": "attributes.score", "op": "gte", "value": 2.5},
        {"field": "attributes.score", "op": "in", "value": ["a", 1, True, 1.5]},
        {"field": "attributes.flag", "op": "eq", "value": False},
        {"field": "attributes.x", "op": "exists", "value": False},
        {"field": "attributes.x", "op": "eq", "value": ""},
        {"field": "last_seen", "op": "not_within_days", "value": 30},
        {"field": "is_test_device", "op": "eq", "value": True},
        {"not": {"any": [IOS, {"all": [IOS, {"not": IOS}]}]}},
    ],
)
def test_valid_rules_round_trip(raw: dict[str, Any]) -> None:
    rule = parse_rules(raw)
    assert _canonical(rule.to_json()) == _canonical(raw)
    assert parse_rules(rule.to_json()) == rule


@settings(max_examples=200, derandomize=True, database=None)
@given(rule_trees)
def test_generated_rules_round_trip(raw: dict[str, Any]) -> None:
    rule = parse_rules(raw)
    assert _canonical(rule.to_json()) == _canonical(raw)
    assert parse_rules(json.loads(json.dumps(rule.to_json()))) == rule


# --------------------------------------------------------------------------------------------
# The parser never accepts garbage

_keys = st.sampled_from(
    ["all", "any", "not", "field", "op", "value", "everyone", "platform", "tags", "in", ""]
)
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["platform", "eq", "in", "ios", "attributes.x", "tags", "contains", "pl"]),
)
json_ish = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(_keys, st.text(max_size=6)), inner, max_size=4),
    ),
    max_leaves=24,
)


def _check_outcome(raw: object) -> None:
    rule: Rule | None = None
    refused: RuleErrors | None = None
    try:
        rule = parse_rules(raw)
    except RuleErrors as caught:
        refused = caught
    if refused is not None:
        assert refused.errors
        assert all(e.path == "rules" or e.path.startswith("rules.") for e in refused.errors)
        return
    assert rule is not None
    if isinstance(rule, Everyone):
        assert isinstance(raw, dict)
        assert list(raw) == ["everyone"]
        assert raw["everyone"] is True
        return
    # Whatever was accepted is exactly what was written: nothing was dropped or guessed.
    assert _canonical(rule.to_json()) == _canonical(raw)


@settings(max_examples=300, derandomize=True, database=None)
@given(json_ish)
def test_arbitrary_input_is_refused_or_read_exactly(raw: object) -> None:
    _check_outcome(raw)


def _mutate(raw: Any, data: st.DataObject) -> Any:
    """Damage one node of a valid rule tree in one of the ways an author might."""
    if isinstance(raw, dict) and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(raw)))
        choice = data.draw(st.integers(0, 5))
        damaged = dict(raw)
        if choice == 0:
            del damaged[key]
        elif choice == 1:
            damaged[key] = data.draw(json_ish)
        elif choice == 2:
            damaged[data.draw(_keys)] = data.draw(json_ish)
        elif choice == 3:
            damaged["everyone"] = data.draw(st.booleans())
        elif choice == 4:
            damaged[key] = []
        else:
            damaged = {}
        return damaged
    if isinstance(raw, dict):
        for key in ("all", "any", "not"):
            if key in raw:
                return {key: _mutate(raw[key], data)}
    if isinstance(raw, list) and raw:
        index = data.draw(st.integers(0, len(raw) - 1))
        return [*raw[:index], _mutate(raw[index], data), *raw[index + 1 :]]
    return data.draw(json_ish)


@settings(max_examples=300, derandomize=True, database=None)
@given(rule_trees, st.data())
def test_damaged_rules_are_refused_or_read_exactly(
    raw: dict[str, Any], data: st.DataObject
) -> None:
    _check_outcome(_mutate(raw, data))


# --------------------------------------------------------------------------------------------
# The reference evaluator's decisions (SQL is held to the same ones in test_rules_sql)


def _device(**fields: Any) -> dict[str, Any]:
    device: dict[str, Any] = {
        "id": uuid.UUID(int=1),
        "platform": "ios",
        "locale": None,
        "timezone": None,
        "app_version": None,
        "tags": [],
        "attributes": {},
        "last_seen_at": NOW,
        "user_id": None,
        "is_test_device": False,
    }
    device.update(fields)
    return device


def _matches(raw: dict[str, Any], **fields: Any) -> bool:
    return evaluate(parse_rules(raw), _device(**fields), now=NOW)


def test_a_condition_on_a_missing_value_is_false_and_its_negation_true() -> None:
    ne = {"field": "locale", "op": "ne", "value": "pl"}
    assert not _matches(ne, locale=None)
    assert _matches({"not": {"field": "locale", "op": "eq", "value": "pl"}}, locale=None)
    assert _matches(ne, locale="en")
    attr_ne = {"field": "attributes.plan", "op": "ne", "value": "gold"}
    assert not _matches(attr_ne)
    assert not _matches(attr_ne, attributes={"plan": None})
    assert not _matches(attr_ne, attributes={"plan": 5})  # another type counts as missing
    assert _matches(attr_ne, attributes={"plan": "silver"})


def test_locale_folding_and_whole_subtag_prefixes() -> None:
    starts = {"field": "locale", "op": "starts_with", "value": "pl"}
    assert _matches(starts, locale="pl")
    assert _matches(starts, locale="PL_pl")
    assert not _matches(starts, locale="pli")
    assert _matches({"field": "locale", "op": "eq", "value": "pl_PL"}, locale="pl-pl")
    assert _matches({"field": "locale", "op": "in", "value": ["en", "PL-PL"]}, locale="pl_PL")


def test_versions_compare_numerically() -> None:
    gte = {"field": "app_version", "op": "gte", "value": "5.10"}
    assert _matches(gte, app_version="5.10.0")
    assert not _matches(gte, app_version="5.9.9")
    assert not _matches(gte, app_version="not a version")
    assert _matches({"field": "app_version", "op": "eq", "value": "1.0.0"}, app_version="1-beta")
    # The stored key is what SQL reads; when present, it is what the evaluator reads too.
    assert not _matches(gte, app_version="6.0", app_version_key=None)


def test_attributes_are_typed() -> None:
    assert _matches({"field": "attributes.n", "op": "eq", "value": 5}, attributes={"n": 5.0})
    assert not _matches({"field": "attributes.n", "op": "eq", "value": 5}, attributes={"n": "5"})
    assert not _matches({"field": "attributes.n", "op": "eq", "value": 1}, attributes={"n": True})
    assert _matches({"field": "attributes.n", "op": "gt", "value": 9}, attributes={"n": 10})
    assert not _matches({"field": "attributes.n", "op": "gt", "value": "9"}, attributes={"n": "10"})
    assert _matches(
        {"field": "attributes.n", "op": "in", "value": ["x", True]}, attributes={"n": True}
    )
    assert _matches(
        {"field": "attributes.n", "op": "exists", "value": False}, attributes={"n": None}
    )
    assert _matches({"field": "attributes.n", "op": "exists", "value": True}, attributes={"n": []})
    assert not _matches({"field": "attributes.n", "op": "exists", "value": True}, attributes=[1])


def test_tags_that_are_not_a_list_match_no_tags_condition() -> None:
    none_of = {"field": "tags", "op": "contains_none", "value": ["vip"]}
    assert _matches(none_of, tags=[])
    assert not _matches(none_of, tags={"vip": 1})
    assert not _matches({"field": "tags", "op": "contains", "value": "vip"}, tags="vip")
    assert _matches({"field": "tags", "op": "contains_all", "value": ["a", "b"]}, tags=["b", "a"])


def test_last_seen_boundary_is_inclusive() -> None:
    within = {"field": "last_seen", "op": "within_days", "value": 7}
    outside = {"field": "last_seen", "op": "not_within_days", "value": 7}
    edge = NOW - timedelta(days=7)
    assert _matches(within, last_seen_at=edge)
    assert not _matches(outside, last_seen_at=edge)
    assert _matches(outside, last_seen_at=edge - timedelta(microseconds=1))


def test_everyone_matches_without_looking() -> None:
    assert evaluate(Everyone(), {}, now=NOW)
