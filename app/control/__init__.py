"""The control plane: how the database's decisions reach every worker through Redis, fast.

- `plane.Control`: the one façade (publish a campaign's grant and rate, publish the global
  switch, stop and wait for the drain) that the commands, the engine and the workers use;
- `gate` (+ `gate.lua`): grants and permits, the kill switch's fast path;
- `fence`: a worker's permits kept alive, and the per-request look that stops a batch;
- `throttle` (+ `throttle.lua`, `throttle_math`): rates, reservations and Retry-After blocks;
- `block_feed`: blocks written by any worker, pushed into every worker's providers.

PostgreSQL decides; nothing here decides anything on its own.
"""
