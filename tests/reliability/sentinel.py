"""A Redis primary, its replica and three sentinels of a test's own (Debian's redis-server
and redis-sentinel), on free ports, keeping nothing on disk but the sentinels' own
configuration files (a sentinel rewrites its file as it learns the topology).

Sentinel timeouts are short (down after 1 s, failover timeout 3 s), so a failover takes a
few seconds instead of the defaults' minutes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.support import free_port

MASTER_NAME = "wavecast"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
QUORUM = 2
SENTINELS = 3


def sentinel_binaries() -> tuple[str, str] | None:
    """redis-server and redis-sentinel, or None when either is missing."""
    server = shutil.which("redis-server")
    sentinel = shutil.which("redis-sentinel")
    if server is None or sentinel is None:
        return None
    return server, sentinel


def require_sentinel() -> tuple[str, str]:
    """The binaries; skips the test without them, unless WAVECAST_REQUIRE_SENTINEL=1 (CI),
    where their absence is a failure."""
    found = sentinel_binaries()
    if found is not None:
        return found
    reason = "redis-server and redis-sentinel are not installed (Debian: redis-sentinel)"
    if os.environ.get("WAVECAST_REQUIRE_SENTINEL") == "1":
        pytest.fail(f"WAVECAST_REQUIRE_SENTINEL=1 but {reason}")
    pytest.skip(reason)


def command(port: int, *args: str, timeout: float = 0.5) -> str:
    """One command over RESP, the reply as text (a bulk string, a status or an error; an
    array's elements joined by newlines). No client library: a test's view of the servers
    stays independent of the client under test."""
    request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request.encode())
        reader = s.makefile("rb")
        return _read(reader)


def _read(reader: object) -> str:
    line = reader.readline().rstrip(b"\r\n")  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:].decode()
    if kind in (b"+", b"-", b":"):
        return rest if kind != b"-" else f"ERROR {rest}"
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return ""
        data: bytes = reader.read(size + 2)  # type: ignore[attr-defined]
        return data[:-2].decode()
    if kind == b"*":
        count = int(rest)
        return "\n".join(_read(reader) for _ in range(max(0, count)))
    raise OSError(f"unexpected reply {line!r}")


def _info(port: int, section: str) -> dict[str, str]:
    text = command(port, "INFO", section)
    return dict(
        line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#")
    )


@dataclass
class Node:
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class SentinelCluster:
    server: str
    sentinel: str
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wavecast-sentinel-")))
    nodes: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)
    frozen: list[Node] = field(default_factory=list)

    @property
    def sentinel_setting(self) -> str:
        """WAVECAST_REDIS_SENTINELS for this cluster."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> None:
        primary = Node(free_port())
        self._start_server(primary, replica_of=None)
        replica = Node(free_port())
        self._start_server(replica, replica_of=primary.port)
        self.nodes = [primary, replica]
        for n in range(SENTINELS):
            node = Node(free_port())
            conf = self.dir / f"sentinel-{n}.conf"
            conf.write_text(
                f"port {node.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.dir}\n"
                f"logfile {self.dir / f'sentinel-{n}.log'}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary.port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            node.proc = subprocess.Popen(
                [self.sentinel, str(conf)], stdin=subprocess.DEVNULL, start_new_session=True
            )
            self.sentinels.append(node)
        for node in self.sentinels:
            _wait_for_ping(node.port)
        self.wait_until_settled(primary.port)

    def _start_server(self, node: Node, *, replica_of: int | None) -> None:
        args = [
            self.server,
            "--port", str(node.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--dbfilename", f"dump-{node.port}.rdb",
            "--logfile", str(self.dir / f"redis-{node.port}.log"),
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        node.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_for_ping(node.port)

    def primary_port(self) -> int | None:
        """The primary's port as the sentinels agree on it (None while they disagree or
        cannot answer)."""
        seen = set()
        for s in self.sentinels:
            try:
                reply = command(s.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME)
            except OSError:
                return None
            seen.add(reply.splitlines()[-1] if reply else "")
        if len(seen) != 1:
            return None
        port = seen.pop()
        return int(port) if port.isdigit() else None

    def wait_until_settled(self, primary: int, *, within: float = 30) -> None:
        """Every sentinel names `primary`, sees the other two sentinels and one replica in
        sync, and the replica's link is up: a failover can then be agreed and completed."""
        deadline = time.monotonic() + within
        while True:
            if self._settled(primary):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sentinels did not settle on {primary}:\n{self.logs()}")
            time.sleep(0.1)

    def _settled(self, primary: int) -> bool:
        try:
            if self.primary_port() != primary:
                return False
            if _info(primary, "replication").get("role") != "master":
                return False
            for s in self.sentinels:
                fields = command(s.port, "SENTINEL", "master", MASTER_NAME).splitlines()
                state = dict(zip(fields[::2], fields[1::2], strict=False))
                if state.get("num-other-sentinels") != str(SENTINELS - 1):
                    return False
                if state.get("num-slaves") != "1" or "down" in state.get("flags", ""):
                    return False
            replica = next(n for n in self.nodes if n.port != primary)
            return _info(replica.port, "replication").get("master_link_status") == "up"
        except OSError:
            return False

    def kill_primary(self) -> int:
        """SIGKILL the primary (a crashed machine); returns its port."""
        port = self.primary_port()
        node = next(n for n in self.nodes if n.port == port)
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()
        node.proc = None
        return node.port

    def freeze_primary(self) -> int:
        """SIGSTOP the primary (a machine that hangs, or a network that drops every packet:
        connections stay open and nothing answers); returns its port."""
        port = self.primary_port()
        node = next(n for n in self.nodes if n.port == port)
        assert node.proc is not None
        node.proc.send_signal(signal.SIGSTOP)
        self.frozen.append(node)
        return node.port

    def thaw(self) -> None:
        """The frozen primaries wake up (the sentinels then turn them into replicas)."""
        for node in self.frozen:
            if node.alive:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGCONT)
        self.frozen.clear()

    def wait_for_new_primary(self, old: int, *, within: float = 20) -> int:
        """The port the sentinels promoted, once they all name it and it answers as a
        primary."""
        deadline = time.monotonic() + within
        while True:
            port = self.primary_port()
            if port is not None and port != old:
                try:
                    if _info(port, "replication").get("role") == "master":
                        return port
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no primary was promoted:\n{self.logs()}")
            time.sleep(0.02)

    def restart_as_replica(self, port: int, primary: int) -> None:
        """The old primary comes back (empty) as a replica of the new one."""
        node = next(n for n in self.nodes if n.port == port)
        self._start_server(node, replica_of=primary)

    def get(self, port: int, key: str) -> str:
        return command(port, "GET", key)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.dir.glob("*.log"))
        )

    def close(self) -> None:
        self.thaw()
        for node in [*self.sentinels, *self.nodes]:
            if node.alive:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGKILL)
                node.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_for_ping(port: int, *, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if command(port, "PING", timeout=0.2) == "PONG":
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answers on port {port}")
        time.sleep(0.05)
