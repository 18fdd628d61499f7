"""A real Prometheus server scraping a small backend, for the wave checks' tests and the gate
benchmark.

`MetricBackend` is the bank's backend as Prometheus sees it: an HTTP server (its own thread)
exposing ``/metrics`` in the text format, one gauge, ``backend_error_ratio``, whose value the
caller sets. `prometheus_server` starts Debian's ``prometheus`` binary with a throw-away
config and storage that scrape it (and evaluate) every ``scrape_seconds``, and yields its URL
once ``/-/ready`` answers and the first sample is queryable.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

METRIC = "backend_error_ratio"
REQUIRE_ENV = "WAVECAST_REQUIRE_PROMETHEUS"


def binary() -> str | None:
    """The prometheus executable, or None when it is not installed."""
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
    )


class MetricBackend:
    """``/metrics`` with one gauge the caller sets; also counts the scrapes."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value
        self.scrapes = 0
        # When the value last changed (time.time()), for measuring a reaction from it.
        self.changed_at = time.time()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                backend.scrapes += 1
                body = (
                    f"# HELP {METRIC} Share of the backend's requests that failed.\n"
                    f"# TYPE {METRIC} gauge\n{METRIC} {backend.value!r}\n"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def set(self, value: float) -> None:
        self.value = value
        self.changed_at = time.time()

    def __enter__(self) -> MetricBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def prometheus_server(
    backend: MetricBackend, work: Path, *, scrape_seconds: float = 1.0
) -> Iterator[str]:
    """A Prometheus process scraping ``backend``; yields its base URL."""
    executable = binary()
    if executable is None:
        raise FileNotFoundError("prometheus is not installed (Debian package `prometheus`)")
    work.mkdir(parents=True, exist_ok=True)
    config = work / "prometheus.yml"
    interval = f"{int(scrape_seconds * 1000)}ms"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        f"  scrape_timeout: {interval}\n"
        "scrape_configs:\n"
        "  - job_name: backend\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{backend.port}']\n",
        encoding="utf-8",
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            executable,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # A fresh sample is never hidden behind an older one for long.
            "--query.lookback-delta=5s",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        _wait_ready(url, process, work)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], work: Path) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=url, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log = (work / "prometheus.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"prometheus exited with {process.returncode}: {log}")
            try:
                answer = client.get("/api/v1/query", params={"query": METRIC})
                if answer.status_code == 200 and answer.json()["data"]["result"]:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise RuntimeError("prometheus did not scrape the backend within 60 s")


def wait_for_value(url: str, value: float, *, within: float = 10.0) -> float:
    """Block until Prometheus answers ``value`` for the gauge; returns when (time.time())."""
    deadline = time.monotonic() + within
    with httpx.Client(base_url=url, timeout=2) as client:
        while time.monotonic() < deadline:
            answer = client.get("/api/v1/query", params={"query": METRIC}).json()
            result = answer["data"]["result"]
            if result and float(result[0]["value"][1]) == value:
                return time.time()
            time.sleep(0.05)
    raise RuntimeError(f"prometheus never answered {value} within {within} s")
