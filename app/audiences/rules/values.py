"""What a condition's value is, and how the SQL compiler and the evaluator both read it.

Contract: every normalisation here is the one both sides apply, so SQL and Python agree on
every device. Locale folding lowers ASCII only, as SQL's ``lower()`` does; a version in a
rule becomes its sort key (:mod:`app.audiences.versions`); an attribute is considered only
in its own JSON kind; ``last_seen`` compares with ``now - days``. Pure functions, no I/O.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Final, TypeAlias

from app.audiences.versions import version_key

Scalar: TypeAlias = str | int | float | bool
Value: TypeAlias = Scalar | tuple[Scalar, ...] | tuple[uuid.UUID, ...]

# ASCII-only case folding: PostgreSQL's lower() under COLLATE "C" and SQLite's lower() fold
# exactly A-Z, so Python must not fold more (e.g. the Kelvin sign K to k).
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_locale(value: str) -> str:
    """The locale with ``_`` read as ``-`` and A-Z lowered."""
    return value.replace("_", "-").translate(_ASCII_LOWER)


def attribute_kind(value: object) -> str | None:
    """The JSON type a typed attribute condition looks at, or None for null/absent/other."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def rule_version_key(value: str) -> str:
    """The sort key of a version a rule holds; ValueError if it is not a version."""
    key = version_key(value)
    # parse_rules guarantees this; a hand-built Condition must not compile to "matches none".
    if key is None:
        raise ValueError(f"not a version: {value!r}")
    return key


def last_seen_cutoff(now: datetime, days: Value) -> datetime:
    """The instant ``last_seen`` compares with: ``days`` before the timezone-aware ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    assert isinstance(days, int)
    return now - timedelta(days=days)


def member(name: str, item: Scalar | uuid.UUID) -> Any:
    """An item of a list value on field ``name``, as the evaluator looks it up (see
    :attr:`~app.audiences.rules.tree.Condition.members`)."""
    if name == "locale":
        return fold_locale(str(item))
    if name == "app_version":
        return rule_version_key(str(item))
    if name.startswith("attributes."):
        # Numbers compare as doubles, as in SQL; the kind keeps True apart from 1.
        if isinstance(item, int | float) and not isinstance(item, bool):
            return ("number", float(item))
        return (attribute_kind(item), item)
    return item
