"""Command-line plumbing shared by ``python -m wavecast_tools.fakes.fcm`` and
``python -m wavecast_tools.fakes.apns``.

Once listening, a fake prints exactly one JSON line on stdout describing itself (``url``, ``port``,
key and CA paths...) and, with ``--ready-file``, writes the same JSON to that file atomically. A
harness starting it with ``--port 0`` reads the port from there. SIGINT/SIGTERM stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.heap import settle_heap
from wavecast_tools.fakes.base import ProtocolFake
from wavecast_tools.fakes.tls import TlsFiles, ensure_tls_files

DEFAULT_CERT_DIR = Path(tempfile.gettempdir()) / "wavecast-fakes" / "tls"


def add_common_arguments(parser: argparse.ArgumentParser, *, default_tls: bool) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="bind port; 0 picks a free one")
    parser.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=default_tls,
        help="serve TLS (ALPN h2, http/1.1) with a certificate from --cert-dir",
    )
    parser.add_argument(
        "--plain-port",
        type=int,
        help="with --tls, also serve plaintext on this port (0 picks a free one)",
    )
    parser.add_argument(
        "--cert-dir",
        type=Path,
        default=DEFAULT_CERT_DIR,
        help="where the fake CA (ca.pem) and server certificate live; created if missing, "
        f"reused otherwise (default {DEFAULT_CERT_DIR})",
    )
    parser.add_argument(
        "--recording",
        choices=("full", "light", "off"),
        default="full",
        help="full: headers and bodies; light: token/time/answer only; off: counters only",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop implementation (auto: uvloop when installed)",
    )
    parser.add_argument("--ready-file", type=Path, help="write the startup JSON here too")


def tls_from_args(args: argparse.Namespace) -> TlsFiles | None:
    return ensure_tls_files(args.cert_dir) if args.tls else None


def run_fake(
    fake: ProtocolFake, args: argparse.Namespace, after_start: Callable[[], dict[str, Any]]
) -> int:
    """Serve ``fake`` until SIGINT/SIGTERM; ``after_start`` supplies the startup JSON."""

    async def serve() -> None:
        await fake.start()
        # Collected as the service's own processes are: the fake stands for Apple's or
        # Google's servers, and on a benchmark's machine its CPU is taken from them.
        settle_heap()
        info = {
            "kind": fake.kind,
            "url": fake.url,
            "port": fake.port,
            "plain_url": fake.plain_url,
            "pid": os.getpid(),
        }
        info.update(after_start())
        line = json.dumps(info)
        print(line, flush=True)
        if args.ready_file is not None:
            tmp = args.ready_file.with_suffix(args.ready_file.suffix + ".tmp")
            tmp.write_text(line + "\n")
            tmp.replace(args.ready_file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await fake.stop()

    with (
        asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner,
        contextlib.suppress(KeyboardInterrupt),
    ):
        runner.run(serve())
    return 0


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop
