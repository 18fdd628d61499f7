"""Benchmark figures and the one table `wavecast bench` prints.

Every scenario returns a list of `Figure`s. A figure with a target says whether it met it;
`wavecast bench` exits 1 when any figure missed its target, so a miss is never silent.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Figure:
    scenario: str
    name: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 0.90", shown beside the value
    ok: bool | None = None  # None: reported only, no target

    @property
    def verdict(self) -> str:
        return {None: "", True: "ok", False: "MISSED"}[self.ok]


def at_least(scenario: str, name: str, value: float, unit: str, target: float) -> Figure:
    return Figure(scenario, name, value, unit, f">= {_number(target)}", value >= target)


def at_most(scenario: str, name: str, value: float, unit: str, target: float) -> Figure:
    return Figure(scenario, name, value, unit, f"<= {_number(target)}", value <= target)


def reported(scenario: str, name: str, value: float, unit: str) -> Figure:
    return Figure(scenario, name, value, unit)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sample")
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def table(figures: Sequence[Figure]) -> str:
    rows = [("scenario", "figure", "value", "unit", "target", "")]
    rows += [(f.scenario, f.name, _number(f.value), f.unit, f.target, f.verdict) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i == 2 else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def exit_code(figures: Sequence[Figure]) -> int:
    return 1 if any(f.ok is False for f in figures) else 0
