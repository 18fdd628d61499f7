"""The typed view of arq's untyped job context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.control.plane import Control
from app.delivery.sender import SenderDeps
from app.runtime import Runtime
from workers.providers import ProviderSet


@dataclass
class WorkerContext:
    runtime: Runtime
    worker_id: str
    control: Control
    providers: ProviderSet
    sender: SenderDeps

    @classmethod
    def of(cls, ctx: dict[str, Any]) -> WorkerContext:
        wc: WorkerContext = ctx["wavecast"]
        return wc
