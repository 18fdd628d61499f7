"""One rule for every address the service calls out to: a webhook and a wave check's sources
refuse the same URLs for the same reasons (`app.urls`)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.checks.spec import check_list
from app.webhooks.service import url_problems as webhook_problems

REFUSED = [
    ("ftp://host.example/x", "scheme"),
    ("host.example:9090", "scheme"),
    ("https:///x", "host"),
    ("https://user:secret@host.example/x", "credentials"),
    ("https://token@host.example/x", "credentials"),
    ("https://host.example/x#part", "fragment"),
    ("https://host.example:0/x", "port 0"),
    ("https://host.example:99999/x", "not a URL"),
    ("https://host example/x", "spaces"),
    ("https://host.example/x\ty", "spaces"),
    ("https://host.example/x\x01", "control characters"),
    ("https://host.example/x\x7f", "control characters"),
]


def _check_problem(url: str) -> str:
    try:
        check_list.validate_python(
            [{"name": "x", "pass_when": {"lt": 1}, "http": {"url": url, "json_field": "a"}}]
        )
    except ValidationError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize(("url", "word"), REFUSED)
def test_webhooks_and_checks_refuse_the_same_urls(url: str, word: str) -> None:
    assert any(word in problem for problem in webhook_problems(url)), webhook_problems(url)
    assert word in _check_problem(url)


@pytest.mark.parametrize(
    "url", ["https://crm.example/hooks?x=1", "http://10.0.0.5:8080/h", "http://prometheus:9090"]
)
def test_plain_addresses_pass_both(url: str) -> None:
    assert webhook_problems(url) == []
    assert _check_problem(url) == ""


def test_length_limits_are_named() -> None:
    long = "https://host.example/" + "a" * 3000
    assert webhook_problems(long) == ["at most 2000 characters"]
    assert "at most 2048 characters" in _check_problem(long)
