"""Benchmarks: `wavecast bench <scenario>` or `wavecast bench all`, one table of figures.

Each scenario is a module with `DESCRIPTION`, `add_arguments(parser)` and
`run_scenario(settings, args) -> list[Figure]` (see `report`). The command exits 1 when any figure
misses its target.
"""

from __future__ import annotations

# name -> module; `wavecast bench all` runs them in this order.
SCENARIOS: dict[str, str] = {
    "delivery": "wavecast_tools.bench.delivery",
    "import": "wavecast_tools.bench.device_import",
    "throttle": "wavecast_tools.bench.throttle",
    "kill": "wavecast_tools.bench.kill",
    "api": "wavecast_tools.bench.api",
    "scale": "wavecast_tools.bench.scale",
    "workers": "wavecast_tools.bench.workers",
    "events": "wavecast_tools.bench.events",
    "timing": "wavecast_tools.bench.timing_rules",
    "gate": "wavecast_tools.bench.gate",
    "opens": "wavecast_tools.bench.opens",
}
