"""Version sort keys: app versions compared as plain strings, in SQL and in Python alike.

A device stores ``app_version_key = version_key(app_version)`` next to its version, so a
version-aware rule ("app_version gte 5.12") is a plain string comparison that PostgreSQL and
SQLite evaluate identically, and an index on the key can serve it.

Contract of :func:`version_key`:

- A version is 1 to 4 dot-separated runs of ASCII digits (``5``, ``5.12``, ``5.12.1``,
  ``5.12.1.300``), each at most 999999, optionally followed by a pre-release or build suffix
  that starts with ``-`` or ``+`` (``5.12.1-beta.2``, ``5.12.1+build7``).
- Missing parts are 0: ``5.12`` and ``5.12.0`` and ``5.12.0.0`` have the same key.
- The suffix is dropped: ``1.0.0-beta`` compares *equal* to ``1.0.0`` (not before it, as
  SemVer would have it). Audience rules target released builds; a pre-release build is
  counted as the release it leads to.
- Every key has the same shape, four 6-digit zero-padded parts joined with ``.``
  (27 ASCII characters), so string order is numeric order whatever the collation.
- Anything else (empty, non-ASCII digits, five parts, a part over 999999, junk) is not a
  version: the key is ``None`` and no version comparison matches it.
"""

from __future__ import annotations

import functools
import re
from typing import Final

_PARTS: Final = 4
_WIDTH: Final = 6
# [0-9], not \d: \d also matches non-ASCII digits, which int() would silently accept.
_VERSION: Final = re.compile(r"([0-9]+(?:\.[0-9]+){0,3})(?:[-+][0-9A-Za-z.-]+)?")


# Apps ship few versions and every registration asks: remember the answers.
@functools.lru_cache(maxsize=4096)
def version_key(version: str) -> str | None:
    """Return a string that sorts like ``version``, or ``None`` if it is not a version.

    ``version_key(a) < version_key(b)`` exactly when the numeric parts of ``a`` come before
    those of ``b`` (missing parts are 0; a ``-``/``+`` suffix is ignored). See the module
    docstring for the accepted spelling.
    """
    if not isinstance(version, str):
        return None
    match = _VERSION.fullmatch(version)
    if match is None:
        return None
    parts = match.group(1).split(".")
    if any(len(part.lstrip("0")) > _WIDTH for part in parts):
        # A seventh digit would make a 6-wide part sort wrongly; refuse rather than mis-sort.
        return None
    # Leading zeros are stripped first: int() refuses strings over 4300 digits.
    numbers = [int(part.lstrip("0") or "0") for part in parts] + [0] * (_PARTS - len(parts))
    return ".".join(f"{number:0{_WIDTH}d}" for number in numbers)
