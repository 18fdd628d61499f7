"""The shape of a wave check: one source, structured bounds, safe URLs, unique names; the
deployment's defaults refused at start-up naming their variable."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from app.checks.spec import CheckSpec, Condition, check_list, load
from app.settings import Settings

EXAMPLES: list[dict[str, Any]] = [
    {
        "name": "backend errors",
        "prometheus": {"url": "http://prometheus:9090", "query": "sum(rate(errors[1m]))"},
        "pass_when": {"lt": 0.02},
        "interval_seconds": 10,
        "failure_limit": 1,
    },
    {
        "name": "api health",
        "http": {"url": "https://api.bank/health", "json_field": "p99_ms"},
        "pass_when": {"lte": 800},
    },
    {"name": "tap surge", "builtin": "opens_per_second", "pass_when": {"lt": 400}},
    {"name": "provider failures", "builtin": "failure_rate", "pass_when": {"lt": 0.05}},
]


def test_the_issue_examples_parse_and_store_with_defaults() -> None:
    checks = check_list.validate_python(EXAMPLES)
    stored = [c.stored() for c in checks]
    assert stored[1] == {
        "name": "api health",
        "http": {"url": "https://api.bank/health", "json_field": "p99_ms"},
        "pass_when": {"lte": 800.0},
        "interval_seconds": 10,
        "failure_limit": 1,
    }
    assert load(stored) == checks
    assert load(None) == []


def _error(check: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        CheckSpec.model_validate(check)
    return str(caught.value)


BASE = {"name": "x", "builtin": "failure_rate", "pass_when": {"lt": 1}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"builtin": None}, "exactly one source"),
        ({"http": {"url": "http://h/x", "json_field": "a"}}, "exactly one source"),
        ({"builtin": "cpu"}, "builtin"),
        ({"pass_when": {}}, "at least one of lt, lte, gt, gte"),
        ({"pass_when": {"lt": "1 or True"}}, "pass_when.lt"),
        ({"pass_when": {"eq": 1}}, "eq"),
        ({"pass_when": "value < 1"}, "pass_when"),
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"interval_seconds": 3601}, "interval_seconds"),
        ({"failure_limit": 0}, "failure_limit"),
        ({"failure_limit": 101}, "failure_limit"),
        ({"name": ""}, "name"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_checks_are_refused(change: dict[str, Any], message: str) -> None:
    check = {**BASE, **change}
    check = {k: v for k, v in check.items() if v is not None}
    assert message in _error(check)


@pytest.mark.parametrize("bound", [math.nan, math.inf, -math.inf])
def test_bounds_must_be_finite(bound: float) -> None:
    assert "finite" in _error({**BASE, "pass_when": {"lt": bound}})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://prometheus:9090", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("prometheus:9090", "scheme"),
        ("http://user:secret@prometheus:9090", "credentials"),
        ("http://token@prometheus:9090", "credentials"),
        ("http:///api", "host"),
        ("http://prometheus:99999", "URL"),
        ("http://prome theus:9090", "spaces"),
    ],
)
def test_urls_must_be_plain_http_with_a_host(url: str, message: str) -> None:
    for source in (
        {"prometheus": {"url": url, "query": "up"}},
        {"http": {"url": url, "json_field": "a"}},
    ):
        check = {"name": "x", "pass_when": {"lt": 1}, **source}
        assert message in _error(check)


def test_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="appears twice"):
        check_list.validate_python([BASE, {**BASE, "pass_when": {"gt": 0}}])


@pytest.mark.parametrize(
    ("bounds", "value", "holds"),
    [
        ({"lt": 1}, 0.999, True),
        ({"lt": 1}, 1, False),
        ({"lte": 1}, 1, True),
        ({"gt": 1}, 1, False),
        ({"gte": 1}, 1, True),
        ({"gt": 0, "lt": 1}, 0.5, True),
        ({"gt": 0, "lt": 1}, 0, False),
        ({"gt": 0, "lt": 1}, 1, False),
    ],
)
def test_every_bound_must_hold(bounds: dict[str, float], value: float, holds: bool) -> None:
    assert Condition.model_validate(bounds).holds(value) is holds


def test_condition_text() -> None:
    assert Condition(gte=0, lt=0.02).text() == "< 0.02 and >= 0"


def test_default_checks_are_read_and_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    monkeypatch.setenv("WAVECAST_DEFAULT_CHECKS", json.dumps(EXAMPLES[2:]))
    assert [c.name for c in Settings().default_checks] == ["tap surge", "provider failures"]
    monkeypatch.setenv("WAVECAST_DEFAULT_CHECKS", "")
    assert Settings().default_checks == []
    for bad, message in [
        ("not json", "is not JSON"),
        (json.dumps([{**BASE, "pass_when": {}}]), "at least one of"),
        (json.dumps([BASE, BASE]), "appears twice"),
        (json.dumps({"name": "x"}), "list"),
    ]:
        monkeypatch.setenv("WAVECAST_DEFAULT_CHECKS", bad)
        with pytest.raises(ValueError, match="WAVECAST_DEFAULT_CHECKS") as caught:
            Settings()
        assert message in str(caught.value)
