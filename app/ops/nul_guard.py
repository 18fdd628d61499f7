"""Text that PostgreSQL cannot store is refused at the door.

PostgreSQL's text and JSONB types cannot hold the NUL character (U+0000), and no UTF-8 text
can hold a lone surrogate (U+D800–U+DFFF, half of a UTF-16 pair): a value carrying either would
fail deep inside a query, or when its answer is written, as a 500 (SQLite stores a lone
surrogate, and every later answer that holds it fails). JSON can only spell them as escapes
(`\\u0000`, `\\ud800`) and a query string NUL as `%00`, so those are looked for here (the body
is parsed again only when an escape is present) and the request is answered 422 naming each
field that holds one. The NDJSON device import checks each line the same way
(`app.devices.importer`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi import Request

from app.errors import FieldError, Problem, validation_problem
from app.ops.middleware import media_type

MESSAGE = "contains a NUL character (U+0000), which text fields cannot hold"
SURROGATE_MESSAGE = (
    "contains a lone surrogate (U+D800 to U+DFFF), half of a UTF-16 pair and not a character: "
    "text must be valid Unicode"
)
# An escape preceded by an even number of backslashes (an odd number escapes the backslash).
_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# Any surrogate escape: a pair spells a character beyond U+FFFF and parses into one, so the
# parsed value is what tells a lone half from a pair.
_SURROGATE_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD][89abcdefABCDEF]")
_LONE = re.compile("[\ud800-\udfff]")


def has_nul_escape(raw: bytes) -> bool:
    # The substring test is the fast path: almost every body has no escape at all.
    return b"\\u0000" in raw and _ESCAPE.search(raw) is not None


def has_surrogate_escape(raw: bytes) -> bool:
    return (b"\\ud" in raw or b"\\uD" in raw) and _SURROGATE_ESCAPE.search(raw) is not None


def has_lone_surrogate(text: str) -> bool:
    return not text.isascii() and _LONE.search(text) is not None


def _shown(text: str) -> str:
    text = text.replace("\x00", "\\u0000")
    return _LONE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _fields(value: Any, bad: Callable[[str], bool], path: str) -> list[str]:
    found: list[str] = []
    if isinstance(value, str):
        if bad(value):
            found.append(path or "body")
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{_shown(str(key))}" if path else _shown(str(key))
            if bad(str(key)):
                found.append(here)
            found += _fields(item, bad, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _fields(item, bad, f"{path}.{index}" if path else str(index))
    return found


def nul_fields(value: Any, path: str = "") -> list[str]:
    """Where in a parsed JSON value a NUL character appears (in a key or a string)."""
    return _fields(value, lambda text: "\x00" in text, path)


def surrogate_fields(value: Any, path: str = "") -> list[str]:
    """Where in a parsed JSON value a lone surrogate appears (in a key or a string)."""
    return _fields(value, has_lone_surrogate, path)


def unstorable_fields(raw: bytes) -> list[FieldError]:
    """The fields of a JSON document (`raw`) that hold text no database can store; none when
    it holds no escape that could spell one, or does not parse (its parser reports that)."""
    nul, surrogate = has_nul_escape(raw), has_surrogate_escape(raw)
    if not (nul or surrogate):
        return []
    try:
        parsed = json.loads(raw)
    except ValueError:
        return []
    errors = [FieldError(path, MESSAGE) for path in nul_fields(parsed)] if nul else []
    if surrogate:
        errors += [FieldError(path, SURROGATE_MESSAGE) for path in surrogate_fields(parsed)]
    return errors


def _json_media(content_type: str) -> bool:
    """Whether FastAPI reads a body of this type as JSON (`application/json`, any
    `application/*+json`, in any case)."""
    kind = media_type(content_type.encode("latin-1"))
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def not_utf8(raw: bytes) -> str | None:
    """Why a JSON body is not UTF-8 text (RFC 8259 asks for UTF-8 between systems), or None.
    Python's JSON parser would read UTF-16 and UTF-32 too, and UTF-8 bytes that encode a lone
    surrogate (`ED A0 80`): neither is looked at by the escape checks above."""
    encoding = json.detect_encoding(raw)
    if encoding not in ("utf-8", "utf-8-sig"):
        return f"the request body is {encoding.upper()}; JSON here must be UTF-8"
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return f"the request body is not UTF-8: bytes {exc.start}-{exc.end - 1} are not a character"
    return None


async def refuse_unstorable_text(request: Request) -> None:
    errors = [
        FieldError(f"query.{name}".replace("\x00", "\\u0000"), MESSAGE)
        for name, value in request.query_params.multi_items()
        if "\x00" in name or "\x00" in value
    ]
    route = request.scope.get("route")
    # Only routes with a declared body: a streamed body (the import) is checked as it streams.
    if getattr(route, "body_field", None) is not None and _json_media(
        request.headers.get("content-type", "")
    ):
        raw = await request.body()
        why = not_utf8(raw)
        if why is not None:
            raise Problem(400, "Malformed JSON", why, errors=[FieldError("body", why)])
        errors += unstorable_fields(raw)
    if errors:
        raise validation_problem(errors)
