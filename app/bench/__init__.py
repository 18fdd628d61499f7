"""Benchmarks: `wavecast bench <scenario>` or `wavecast bench all`, one table of figures.

Each scenario is a module with `DESCRIPTION`, `add_arguments(parser)` and
`run_scenario(settings, args) -> list[Figure]` (see `report`). The command exits 1 when any figure
misses its target.
"""

from __future__ import annotations

# name -> module; `wavecast bench all` runs them in this order.
SCENARIOS: dict[str, str] = {
    "delivery": "app.bench.delivery",
    "import": "app.bench.device_import",
    "throttle": "app.bench.throttle",
    "kill": "app.bench.kill",
    "api": "app.bench.api",
    "scale": "app.bench.scale",
}
