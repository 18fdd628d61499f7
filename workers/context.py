"""The typed view of arq's untyped job context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.runtime import Runtime


@dataclass
class WorkerContext:
    runtime: Runtime
    worker_id: str

    @classmethod
    def of(cls, ctx: dict[str, Any]) -> WorkerContext:
        wc: WorkerContext = ctx["wavecast"]
        return wc
