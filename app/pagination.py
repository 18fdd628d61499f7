"""Opaque keyset cursors: stable under inserts, unlike offsets."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from app.errors import FieldError, validation_problem


def bad_cursor() -> Exception:
    return validation_problem([FieldError("query.cursor", "not a cursor from this API")])


T = TypeVar("T")


def page(
    rows: Sequence[T], limit: int, cursor_of: Callable[[T], object]
) -> tuple[list[T], str | None]:
    """Split a `limit + 1` fetch into the page and the cursor of the next one (None at the end)."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return items, encode(cursor_of(items[-1])) if more and items else None


def encode(value: object) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise validation_problem(
            [FieldError("query.cursor", "not a cursor from this API")]
        ) from None


def decode_text(cursor: str) -> str:
    return _decode(cursor)


def decode_uuid(cursor: str | None) -> uuid.UUID | None:
    if cursor is None:
        return None
    try:
        return uuid.UUID(_decode(cursor))
    except ValueError:
        raise validation_problem(
            [FieldError("query.cursor", "not a cursor from this API")]
        ) from None


def decode_int(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        value = int(_decode(cursor))
    except ValueError:
        raise bad_cursor() from None
    # Ids are positive 64-bit integers; anything else never came from this API (and would
    # overflow the database's BIGINT).
    if not 0 < value < 2**63:
        raise bad_cursor()
    return value
