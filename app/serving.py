"""Serving the API inside a process that owns its own signal handling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn


class QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: `wavecast run` stops the API, then the worker,
    then the embedded Redis, in that order, and uvicorn must not re-raise the signal first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
