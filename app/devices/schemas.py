"""Request and response shapes for devices.

Request models forbid unknown fields: `is_test_device` (or any other field the caller may
not set) sent to the registration call is refused with a 422 naming it, never applied.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.devices.models import ApnsEnvironment, DeviceStatus, Platform
from app.errors import PATTERN_MESSAGES
from app.ops.nul_guard import SURROGATE_MESSAGE, has_lone_surrogate

# Patterns run inside pydantic-core (no Python call per field: the bulk import validates
# tens of thousands of registrations a second); PATTERN_MESSAGES turns a mismatch into a
# sentence that says what is expected.
_LOCALE = r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8}){0,3}$"
_VERSION = r"^\d+(\.\d+){0,3}([-+][0-9A-Za-z.-]+)?$"
_TOKEN = r"^[\x21-\x7e]+$"
_ZONES = frozenset(available_timezones())

PATTERN_MESSAGES.update(
    {
        "token": "must be printable ASCII without spaces",
        "locale": "must be a language tag such as 'pl', 'pl-PL' or 'en_GB'",
        "app_version": "must be a version such as '5.12.1'",
    }
)


def _locale(value: str) -> str:
    return value.replace("_", "-")


def known_time_zone(value: str) -> bool:
    """A zone of the bundled list: accepted without loading it (the import's fast path)."""
    return value in _ZONES


def _timezone(value: str) -> str:
    if value not in _ZONES:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as 'Europe/Warsaw'") from None
    return value


_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A number, with a fraction or an exponent or not, stays inside the signed 64-bit range.
# Beyond it an integer cannot be encoded for PostgreSQL (orjson stops at 64 bits) and a float
# does not come back as sent: jsonb writes numbers without an exponent, so 1e308 is read back as a
# 309-digit integer, one this API would refuse. Inside it, a float of 1e16 or more is read
# back as the equal integer (9e18 as 9000000000000000000) on PostgreSQL, as itself on SQLite.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_OUT_OF_RANGE = f"must be between {_INT64_MIN} and {_INT64_MAX} (a signed 64-bit integer)"


def attribute_value_problem(value: object) -> str | None:
    """Why an attribute's value cannot be stored and read back as sent, or None.

    Only scalars are attribute values (`attributes_problem`), so there is no deeper level."""
    if isinstance(value, str):
        if has_lone_surrogate(value):
            return SURROGATE_MESSAGE
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            return _OUT_OF_RANGE
    elif isinstance(value, float):
        if not math.isfinite(value):
            return "must be a finite number (not NaN, Infinity or beyond 1.8e308)"
        # Strictly: the float -2**63 is written back as -9223372036854776000.
        if not _INT64_MIN < value < -_INT64_MIN:
            return _OUT_OF_RANGE
    return None


def attributes_problem(value: dict[str, Any]) -> str | None:
    """What is wrong with a set of attributes, or None."""
    problem = _attributes_shape_problem(value)
    if problem is not None:
        return problem
    for key, item in value.items():
        problem = attribute_value_problem(item)
        if problem is not None:
            return f"attribute {key!r} {problem}"
    return None


def _attributes_shape_problem(value: dict[Any, Any]) -> str | None:
    """What is wrong with the names, number and types of attributes, or None."""
    if not value:
        return None
    if len(value) > 64:
        return "at most 64 attributes"
    for key, item in value.items():
        if not isinstance(key, str) or not _ATTRIBUTE_NAME.fullmatch(key):
            return f"attribute name {key!r} must be 1-64 of A-Z a-z 0-9 _ . -"
        if not (item is None or isinstance(item, str | int | float | bool)):
            return f"attribute {key!r} must be a string, number, boolean or null"
        if isinstance(item, str) and len(item) > 512:
            return f"attribute {key!r} is longer than 512 characters"
    return None


def _attributes_shape(value: object) -> object:
    # Checked before the values, so that a value's problem is only ever reported against a
    # valid name (`attributes.<name>`): a name holding a lone surrogate, say, could not be
    # written in the answer. What is not an object is left for the dict type to refuse.
    if isinstance(value, dict):
        problem = _attributes_shape_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return value


def _attribute_value(value: Any) -> Any:
    problem = attribute_value_problem(value)
    if problem is not None:
        raise PydanticCustomError("attribute_value", problem)
    return value


Token = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=_TOKEN)]
Locale = Annotated[str, StringConstraints(max_length=35, pattern=_LOCALE), AfterValidator(_locale)]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timezone)]
AppVersion = Annotated[str, StringConstraints(max_length=64, pattern=_VERSION)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Tags = Annotated[list[Tag], Field(max_length=64)]
Attributes = Annotated[
    dict[str, Annotated[Any, AfterValidator(_attribute_value)]],
    BeforeValidator(_attributes_shape),
]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceRegistration(_Strict):
    token: Token
    platform: Platform
    user_id: UserId | None = None
    locale: Locale | None = None
    timezone: TimeZone | None = None
    app_version: AppVersion | None = None
    tags: Tags = Field(default_factory=list)
    attributes: Attributes = Field(default_factory=dict)
    apns_environment: ApnsEnvironment | None = None

    @model_validator(mode="after")
    def _apns_environment_matches_platform(self) -> Self:
        check_apns_environment(self.platform, self.apns_environment, present=True)
        return self


class DevicePatch(_Strict):
    user_id: UserId | None = None
    locale: Locale | None = None
    timezone: TimeZone | None = None
    app_version: AppVersion | None = None
    tags: Tags | None = None
    attributes: Attributes | None = None
    apns_environment: ApnsEnvironment | None = None


def check_apns_environment(
    platform: Platform, environment: ApnsEnvironment | None, *, present: bool
) -> None:
    # An iOS token only works on the APNs host of the environment its app was built for;
    # guessing would send to the wrong host, so the caller must say.
    # Compared by value: rows loaded from the database carry plain strings.
    if platform == Platform.ios and environment is None and present:
        raise ValueError("apns_environment is required for ios devices ('sandbox' or 'production')")
    if platform == Platform.android and environment is not None:
        raise ValueError("apns_environment applies only to ios devices")


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    token: str
    platform: Platform
    user_id: str | None
    locale: str | None
    timezone: str | None
    app_version: str | None
    tags: list[str]
    attributes: dict[str, Any]
    apns_environment: ApnsEnvironment | None
    is_test_device: bool
    status: DeviceStatus
    bucket: int
    last_seen_at: datetime
    created_at: datetime
    updated_at: datetime


class DevicePage(BaseModel):
    items: list[DeviceOut]
    next_cursor: str | None


class ImportRejection(BaseModel):
    line: int
    error: str


class ImportResult(BaseModel):
    created: int
    updated: int
    rejected: list[ImportRejection]
    rejected_total: int
