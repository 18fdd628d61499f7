"""Text that PostgreSQL cannot store is refused at the door.

PostgreSQL's text and JSONB types cannot hold the NUL character (U+0000): a value carrying
one would fail deep inside a query as a 500. JSON can only spell it as the escape `\\u0000`
and a query string as `%00`, so both are looked for here (the body is parsed again only when
the escape is present) and the request is answered 422 naming each field that holds one.
The NDJSON device import checks each line the same way (`app.devices.importer`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request

from app.errors import FieldError, validation_problem

MESSAGE = "contains a NUL character (U+0000), which text fields cannot hold"
# `\u0000` preceded by an even number of backslashes (an odd number escapes the backslash).
_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def has_nul_escape(raw: bytes) -> bool:
    # The substring test is the fast path: almost every body has no escape at all.
    return b"\\u0000" in raw and _ESCAPE.search(raw) is not None


def nul_fields(value: Any, path: str = "") -> list[str]:
    """Where in a parsed JSON value a NUL character appears (in a key or a string)."""
    found: list[str] = []
    if isinstance(value, str):
        if "\x00" in value:
            found.append(path or "body")
    elif isinstance(value, dict):
        for key, item in value.items():
            shown = str(key).replace("\x00", "\\u0000")
            here = f"{path}.{shown}" if path else shown
            if "\x00" in str(key):
                found.append(here)
            found += nul_fields(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += nul_fields(item, f"{path}.{index}" if path else str(index))
    return found


async def refuse_nul_characters(request: Request) -> None:
    errors = [
        FieldError(f"query.{name}".replace("\x00", "\\u0000"), MESSAGE)
        for name, value in request.query_params.multi_items()
        if "\x00" in name or "\x00" in value
    ]
    route = request.scope.get("route")
    # Only routes with a declared body: a streamed body (the import) is checked as it streams.
    if getattr(route, "body_field", None) is not None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            raw = await request.body()
            if has_nul_escape(raw):
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None  # the body's own parser reports it
                errors += [FieldError(path, MESSAGE) for path in nul_fields(parsed)]
    if errors:
        raise validation_problem(errors)
