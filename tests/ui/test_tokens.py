"""CSRF token comparison and the sign-in redirect target: pure functions."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.ui.auth_pages import HOME, safe_next
from app.ui.sessions import new_token, tokens_match


def test_fresh_tokens_differ_and_match_only_themselves() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 40
    assert tokens_match(a, a)
    assert not tokens_match(a, b)


@pytest.mark.parametrize(("expected", "given"), [("", ""), ("", None), ("x", None), ("x", "")])
def test_missing_tokens_never_match(expected: str, given: str | None) -> None:
    assert not tokens_match(expected, given)


@given(st.text(min_size=1), st.text(min_size=1))
def test_tokens_match_exactly_when_equal(a: str, b: str) -> None:
    assert tokens_match(a, b) == (a == b)


@given(st.text())
# "://" inside a path of the form is still a path on this site, and is kept.
@example("/ui/a://b")
@example("//evil.example/ui/")
@example("/\\evil.example")
@example("/ui//evil.example")
def test_next_stays_inside_the_form(target: str) -> None:
    chosen = safe_next(target)
    assert chosen == HOME or (chosen == target and chosen.startswith("/ui/"))
    # Browsers drop tabs and newlines and read a backslash as a slash before resolving a
    # Location: one leading slash and no second one is a path on this site, never another host.
    path = chosen.translate(dict.fromkeys(map(ord, "\t\n\r")))
    assert path.startswith("/") and path[1:2] not in ("/", "\\")
