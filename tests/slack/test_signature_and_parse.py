"""Slack's v0 signatures and the command's words: pure."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from app.slack.parse import Command, CommandError, Verb, parse
from app.slack.signature import problem, sign

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def test_our_signatures_are_slacks() -> None:
    body = b"token=x&team_id=T1&user_id=U1&command=%2Fwavecast&text=status"
    stamp = "1531420618"
    assert sign(SECRET, stamp, body) == SignatureVerifier(SECRET).generate_signature(
        timestamp=stamp, body=body
    )


@given(st.binary(max_size=300), st.integers(0, 2**31))
def test_a_good_signature_passes_and_any_other_body_fails(body: bytes, stamp: int) -> None:
    good = sign(SECRET, str(stamp), body)
    assert problem(SECRET, str(stamp), good, body, now=stamp + 10) is None
    assert (
        problem(SECRET, str(stamp), good, body + b"x", now=stamp)
        == "the request's signature does not match"
    )
    assert problem("another secret", str(stamp), good, body, now=stamp) is not None


def test_stale_missing_and_malformed_requests_are_refused() -> None:
    now = time.time()
    stamp = str(int(now) - 301)
    assert "five minutes" in (problem(SECRET, stamp, sign(SECRET, stamp, b""), b"", now=now) or "")
    ahead = str(int(now) + 301)
    assert "five minutes" in (problem(SECRET, ahead, sign(SECRET, ahead, b""), b"", now=now) or "")
    assert "not signed" in (problem(SECRET, None, "v0=00", b"", now=now) or "")
    assert "not signed" in (problem(SECRET, "1", None, b"", now=now) or "")
    assert "not a number" in (problem(SECRET, "soon", "v0=00", b"", now=now) or "")
    assert "not configured" in (problem("", "1", "v0=00", b"", now=now) or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Command(Verb.help)),
        ("status", Command(Verb.status)),
        ("STATUS", Command(Verb.status)),
        ("kill 6f1c2b1e wrong segment", Command(Verb.kill, "6f1c2b1e", "wrong segment")),
        (
            'kill "November statement" wrong audience',
            Command(Verb.kill, "November statement", "wrong audience"),
        ),
        ("kill “November statement” curly", Command(Verb.kill, "November statement", "curly")),
        ("kill-all app is down", Command(Verb.kill_all, None, "app is down")),
        ("pause abc12345 checking", Command(Verb.pause, "abc12345", "checking")),
        ("resume abc12345 all good", Command(Verb.resume, "abc12345", "all good")),
        ("release incident over", Command(Verb.release, None, "incident over")),
    ],
)
def test_commands(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("explode everything", "unknown command 'explode'"),
        ("kill", "needs a campaign and a reason"),
        ("kill abc12345", "needs a reason"),
        ("kill-all", "needs a reason"),
        ("release", "needs a reason"),
        ("status now", "takes nothing more"),
        ("pause " + "a" * 9 + " " + "x" * 1001, "longer than 1000"),
    ],
)
def test_malformed_commands_say_how_to_write_them(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse(text)
