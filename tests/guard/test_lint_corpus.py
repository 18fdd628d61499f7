"""Content lint against a corpus: realistic bank pushes must pass, what people type while testing
must not.

``corpus/real.jsonl`` holds campaigns a Polish or British bank would really send (titles, bodies,
deep links, image urls); ``corpus/test_like.jsonl`` holds what QA staff and developers push by
mistake. Each line is one content's text fields, keyed by the lint's field paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.guard.lint import lint_content

CORPUS = Path(__file__).parent / "corpus"


def _load(name: str) -> list[dict[str, str]]:
    with (CORPUS / name).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


REAL = _load("real.jsonl")
TEST_LIKE = _load("test_like.jsonl")


def test_the_corpus_is_large_enough_to_mean_something() -> None:
    assert len(REAL) >= 200
    assert len(TEST_LIKE) >= 200
    for fields in (*REAL, *TEST_LIKE):
        assert fields
        assert all(isinstance(text, str) for text in fields.values())


def test_no_real_campaign_is_flagged() -> None:
    false_positives = [
        f"{fields}\n    -> " + "; ".join(f"{f.field}: {f.code} {f.match!r}" for f in findings)
        for fields in REAL
        if (findings := lint_content(fields))
    ]

    assert not false_positives, (
        f"{len(false_positives)} of {len(REAL)} real campaigns flagged:\n"
        + "\n".join(false_positives)
    )


def test_every_test_like_content_is_flagged() -> None:
    false_negatives = [str(fields) for fields in TEST_LIKE if not lint_content(fields)]

    assert not false_negatives, (
        f"{len(false_negatives)} of {len(TEST_LIKE)} test-like contents passed:\n"
        + "\n".join(false_negatives)
    )


# A real word appended to real copy is still real copy: the lint must not be tripped by how
# words happen to sit next to each other.
EXTRA_WORDS = st.sampled_from(
    [
        "dziś", "teraz", "dla Ciebie", "w aplikacji", "kartą", "bez opłat", "today", "now",
        "in the app", "for you", "latest", "contest", "Testament", "przetestuj", "BLIK", "🎁",
        "2026", "24/7", "-20%", "www.bank.pl", "https://bank.pl/oferta",
    ]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=len(REAL) - 1),
    field=st.sampled_from(["title", "body"]),
    word=EXTRA_WORDS,
    at_end=st.booleans(),
)
def test_real_copy_with_an_extra_real_word_stays_clean(
    index: int, field: str, word: str, at_end: bool
) -> None:
    fields = dict(REAL[index])
    fields[field] = f"{fields[field]} {word}" if at_end else f"{word} {fields[field]}"

    assert lint_content(fields) == []


@pytest.mark.parametrize("name", ["real.jsonl", "test_like.jsonl"])
def test_corpus_lines_have_no_duplicates(name: str) -> None:
    entries = [json.dumps(fields, sort_keys=True) for fields in _load(name)]

    assert len(entries) == len(set(entries))
