"""An exclusive advisory lock on a file, for create-once material shared by several fakes.

A benchmark typically starts a sandbox and a production APNs fake at the same moment with the
default ``--cert-dir``; without the lock both would generate a CA and a key and interleave their
writes, leaving a CA that did not sign the server certificate.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
