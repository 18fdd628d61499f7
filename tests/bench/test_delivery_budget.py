"""The delivery benchmark's CPU budget for the engine's cost: what a campaign may add to the
bare loop on its request path per message and still reach its target ratio."""

from __future__ import annotations

import pytest
from wavecast_tools.bench.delivery import Phase, Side, _budget_figures


def _phase(rate: float, messages: int, **cpu: float) -> Phase:
    return Phase(rate=rate, messages=messages, cpu=cpu)


def test_the_budget_is_the_bare_loops_cpu_over_the_target_less_its_own() -> None:
    side = Side("apns")
    # 10,000 messages at 5,000/s on 1.0 + 0.6 CPU seconds: 0.16 s per 1,000, 0.8 cores.
    side.variants["lean"] = [_phase(5000, 10_000, bench=1.0, fake=0.6)]
    # The campaign: 0.25 s per 1,000 in all.
    side.ours = [_phase(3000, 10_000, worker=1.2, fake=0.7, postgres=0.5, redis=0.1)]
    side.floor = {"lease": 0.004, "outcome": 0.005}
    figures = {f.name: f.value for f in _budget_figures("apns", side, 0.8)}
    assert figures["apns bare loop, own request path: cores busy"] == pytest.approx(0.8)
    assert figures["apns bare loop, own request path: CPU per 1,000 messages"] == pytest.approx(
        0.16
    )
    assert figures["apns campaign: CPU per 1,000 messages"] == pytest.approx(0.25)
    assert figures["apns CPU the engine adds per 1,000 messages"] == pytest.approx(0.09)
    # At 0.8 of the bare rate on the same cores: 0.16 / 0.8 = 0.2 s, of which 0.16 is the
    # request path's own.
    assert figures["apns CPU the engine may add per 1,000 messages at 0.8"] == pytest.approx(0.04)
    assert figures[
        "apns ledger floor: PostgreSQL CPU per 1,000 rows, outcome writes"
    ] == pytest.approx(0.005)


def test_the_medians_are_taken_over_rounds() -> None:
    side = Side("apns")
    side.variants["lean"] = [
        _phase(5000, 1000, bench=0.1),
        _phase(5000, 1000, bench=0.2),
        _phase(5000, 1000, bench=0.9),
    ]
    side.ours = [_phase(1, 1000, worker=0.3)] * 3
    figures = {f.name: f.value for f in _budget_figures("apns", side, None)}
    assert figures["apns bare loop, own request path: CPU per 1,000 messages"] == pytest.approx(0.2)
    assert not any("may add" in name for name in figures)


def test_the_ceiling_pairs_each_rounds_loops() -> None:
    side = Side("apns")
    # Round by round: 0.5, 0.8, 0.9 of the lean loop.
    side.variants["lean"] = [_phase(2000, 1), _phase(5000, 1), _phase(10000, 1)]
    side.variants["own path"] = [_phase(1000, 1), _phase(4000, 1), _phase(9000, 1)]
    assert side.ratios_between("own path", "lean") == pytest.approx([0.5, 0.8, 0.9])
    side.variants["own path"] = [_phase(1900, 1), _phase(2000, 1), _phase(9000, 1)]
    # 0.95, 0.4, 0.9: the median of the pairs is 0.9, not 2,000 / 5,000.
    assert side.ratios_between("own path", "lean") == pytest.approx([0.95, 0.4, 0.9])
    side.variants["own path"].pop()
    with pytest.raises(ValueError, match="longer"):
        side.ratios_between("own path", "lean")
