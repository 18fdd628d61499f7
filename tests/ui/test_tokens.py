"""CSRF token comparison and the sign-in redirect target: pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
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
def test_next_stays_inside_the_form(target: str) -> None:
    chosen = safe_next(target)
    assert chosen == HOME or (chosen == target and chosen.startswith("/ui/"))
    assert not chosen.startswith("//") and "://" not in chosen.split("?")[0][:12]
