"""The field catalogue: which fields a condition may name, the operators each takes, and the
validator of each field's values.

Contract: a validator takes one decoded JSON value (or one item of a list value) and returns
it as the tree holds it, or raises :class:`Invalid` with a message that completes
'value for "<field>" ...'. Locales and time zones are checked by the types registration
uses, and tags as registration stores them, so such a value is always something a device
could hold. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from app.audiences.rules.values import Scalar
from app.audiences.versions import version_key
from app.devices.schemas import Locale, TimeZone

MAX_STRING: Final = 256
MAX_DAYS: Final = 3650

ATTRIBUTE_KEY: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_PLATFORMS: Final = ("ios", "android")
_COMPARISONS: Final = ("eq", "ne", "lt", "lte", "gt", "gte")

# Which operators each field takes. The list operators take a list, every other one value.
OPERATORS: Final[dict[str, tuple[str, ...]]] = {
    "platform": ("eq", "ne", "in"),
    "locale": ("eq", "ne", "in", "starts_with"),
    "timezone": ("eq", "ne", "in"),
    "app_version": (*_COMPARISONS, "in"),
    "tags": ("contains", "contains_any", "contains_all", "contains_none"),
    "attributes": (*_COMPARISONS, "in", "exists"),
    "last_seen": ("within_days", "not_within_days"),
    "user_id": ("eq", "in"),
    "is_test_device": ("eq",),
    "device_id": ("in",),
}
# A list operator's value is a non-empty list of at most MAX_LIST items.
LIST_OPERATORS: Final = frozenset({"in", "contains_any", "contains_all", "contains_none"})
MAX_LIST: Final = 10_000
FIELD_NAMES: Final = ", ".join(
    "attributes.<key>" if name == "attributes" else name for name in OPERATORS
)

# Device fields are validated by the same types registration uses, so a rule value is always
# something a device could hold.
_LOCALE: Final = TypeAdapter(Locale)
_TIMEZONE: Final = TypeAdapter(TimeZone)


class Invalid(Exception):
    """A value failed validation; the message completes 'value for "<field>" ...'."""


def _string(raw: object, what: str) -> str:
    if not isinstance(raw, str):
        raise Invalid(f"must be {what}")
    if len(raw) > MAX_STRING:
        raise Invalid(f"is {len(raw):,} characters long; at most {MAX_STRING} are allowed")
    # PostgreSQL text cannot hold NUL, and an unpaired surrogate cannot be sent as UTF-8:
    # either would fail at query time instead of here.
    if "\x00" in raw:
        raise Invalid("must not contain NUL characters")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid("must be valid Unicode text") from None
    return raw


def _platform(raw: object) -> str:
    value = _string(raw, '"ios" or "android"')
    if value not in _PLATFORMS:
        raise Invalid('must be "ios" or "android"')
    return value


def _registered(raw: object, what: str, adapter: TypeAdapter[str]) -> str:
    """A string that ``adapter`` (registration's own type for the field) accepts."""
    value = _string(raw, what)
    try:
        adapter.validate_python(value)
    except ValidationError:
        raise Invalid(f"must be {what}") from None
    return value


def _locale(raw: object) -> str:
    return _registered(raw, 'a language tag such as "pl", "pl-PL" or "en_GB"', _LOCALE)


def _timezone(raw: object) -> str:
    return _registered(raw, 'an IANA time zone such as "Europe/Warsaw"', _TIMEZONE)


def _version(raw: object) -> str:
    what = 'a version such as "5.12.1"'
    value = _string(raw, what)
    if version_key(value) is None:
        raise Invalid(f"must be {what}")
    return value


def _tag(raw: object) -> str:
    what = "a tag: 1-64 characters without surrounding spaces"
    value = _string(raw, what)
    # Registration strips tags and caps them at 64, so any other tag could never match.
    if not value or len(value) > 64 or value != value.strip():
        raise Invalid(f"must be {what}")
    return value


def _user_id(raw: object) -> str:
    value = _string(raw, "a user id: a string of 1-256 characters")
    if not value:
        raise Invalid("must be a user id: a string of 1-256 characters")
    return value


def _device_id(raw: object) -> uuid.UUID:
    what = 'a device id such as "0b6e8d3c-6f7a-4f5e-9a49-3f1d2c7e8b10"'
    value = _string(raw, what)
    if not _UUID.fullmatch(value):
        raise Invalid(f"must be {what}")
    return uuid.UUID(value)


def _boolean(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise Invalid("must be true or false")
    return raw


def _days(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_DAYS:
        raise Invalid(f"must be a whole number of days from 1 to {MAX_DAYS}")
    return raw


def _number(raw: int | float) -> int | float:
    try:
        finite = math.isfinite(float(raw))
    except OverflowError:
        finite = False
    if not finite:
        raise Invalid("must be a finite number within the range of a 64-bit float")
    return raw


def _attribute_value(raw: object) -> Scalar:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        return _number(raw)
    if isinstance(raw, str):
        return _string(raw, "a string, number or boolean")
    raise Invalid("must be a string, number or boolean")


def _attribute_ordered(raw: object) -> Scalar:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise Invalid("must be a string or a number for an ordering operator")
    return _attribute_value(raw)


def value_parser(base: str, op: str) -> Callable[[object], Any]:
    """The validator of one value (or one list item) of ``base`` under ``op``."""
    if base == "attributes":
        if op == "exists":
            return _boolean
        return _attribute_ordered if op in ("lt", "lte", "gt", "gte") else _attribute_value
    return {
        "platform": _platform,
        "locale": _locale,
        "timezone": _timezone,
        "app_version": _version,
        "tags": _tag,
        "last_seen": _days,
        "user_id": _user_id,
        "is_test_device": _boolean,
        "device_id": _device_id,
    }[base]
