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


# arq logs every job's start, end and retry at INFO: the tick's twice a second, and each send
# job's. They say nothing happened; what did happen (a wave released, a campaign stopped) has
# a line of its own, so these are DEBUG here.
_ARQ_JOB_LINES = frozenset(
    {
        "%6.2fs → %s(%s)%s",
        "%6.2fs ← %s ● %s",
        "%6.2fs ↻ %s retrying job in %0.2fs",
    }
)


class _JobLinesAtDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and record.msg in _ARQ_JOB_LINES
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            # The logger let the record through at INFO; at DEBUG it passes only where
            # DEBUG is wanted.
            return logging.getLogger("arq.worker").isEnabledFor(logging.DEBUG)
        return True


# On the logger, not a handler: every handler (the JSON one, a test's) sees the same level,
# in every process that imports this module (the worker does, through the send loop).
_arq_worker_log = logging.getLogger("arq.worker")
if not any(isinstance(f, _JobLinesAtDebug) for f in _arq_worker_log.filters):
    _arq_worker_log.addFilter(_JobLinesAtDebug())


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
