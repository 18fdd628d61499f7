import pytest
from wavecast_tools.bench.report import (
    Figure,
    at_least,
    at_most,
    exit_code,
    percentile,
    reported,
    table,
)


def test_targets_decide_the_exit_code() -> None:
    met = at_least("delivery", "fcm ratio", 0.95, "x", 0.90)
    missed = at_most("kill", "p99", 300.0, "ms", 250.0)
    info = reported("scale", "rows/s", 12345.0, "rows/s")
    assert met.ok is True
    assert missed.ok is False
    assert info.ok is None
    assert exit_code([met, info]) == 0
    assert exit_code([met, missed, info]) == 1


def test_table_shows_every_figure_and_marks_misses() -> None:
    figures = [
        at_least("delivery", "fcm ratio", 0.95, "x", 0.90),
        at_most("kill", "p99 answer to last request", 300.0, "ms", 250.0),
    ]
    lines = table(figures).splitlines()
    assert lines[0].split() == ["scenario", "figure", "value", "unit", "target"]
    assert len(lines) == 2 + len(figures)
    assert lines[2].endswith("ok")
    assert lines[3].endswith("MISSED")
    assert "<= 250" in lines[3]


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [([5.0], 99, 5.0), ([1, 2, 3, 4], 50, 2), ([1, 2, 3, 4], 75, 3), (list(range(1, 101)), 99, 99)],
)
def test_percentile_is_nearest_rank(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == expected


def test_percentile_refuses_an_empty_sample() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)


def test_figure_is_comparable() -> None:
    assert Figure("a", "b", 1.0, "u") == reported("a", "b", 1.0, "u")
