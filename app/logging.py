"""JSON logs carrying the campaign and wave being worked on."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

campaign_var: ContextVar[str | None] = ContextVar("campaign_id", default=None)
wave_var: ContextVar[int | None] = ContextVar("wave", default=None)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        campaign = campaign_var.get()
        if campaign is not None and not hasattr(record, "campaign_id"):
            record.campaign_id = campaign
        wave = wave_var.get()
        if wave is not None and not hasattr(record, "wave"):
            record.wave = wave
        return True


def configure(level: str = "INFO", *, json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    formatter: logging.Formatter
    if json_logs:
        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "hpack", "h2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
