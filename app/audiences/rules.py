"""The audience rule language: parse (fail closed), compile to SQL, evaluate in Python.

This docstring is the reference for API users.

Shape
-----
A rule is a JSON object, one of:

- ``{"everyone": true}`` -- every device. Allowed only as the whole rule, spelled exactly so.
  It is the *only* way to target everyone: an empty object, an empty list, an unknown key or
  a malformed node is a validation error, never "everyone".
- ``{"all": [rule, ...]}`` -- every sub-rule matches (non-empty list).
- ``{"any": [rule, ...]}`` -- at least one sub-rule matches (non-empty list).
- ``{"not": rule}`` -- the sub-rule does not match.
- ``{"field": F, "op": O, "value": V}`` -- a condition on one device field.

Fields and operators
--------------------
==================  ==============================================  ===========================
field               operators                                       value
==================  ==============================================  ===========================
platform            eq, ne / in                                     "ios" or "android" / list
locale              eq, ne, starts_with / in                        language tag ("pl", "pl-PL")
timezone            eq, ne / in                                     IANA zone ("Europe/Warsaw")
app_version         eq, ne, lt, lte, gt, gte / in                   version ("5.12.1")
tags                contains / contains_any, contains_all,          tag / list of tags
                    contains_none
attributes.<key>    eq, ne, lt, lte, gt, gte / in / exists          string, number or boolean /
                                                                    list of them / true, false
last_seen           within_days, not_within_days                    whole days, 1..3650
user_id             eq / in                                         user id / list of them
is_test_device      eq                                              true or false
device_id           in                                              list of device ids (UUIDs)
==================  ==============================================  ===========================

``in`` and the ``contains_*`` list operators take a non-empty list of at most 10,000 items.

- ``locale`` compares case-insensitively with ``_`` read as ``-`` (``"pl_pl"`` equals
  ``"pl-PL"``). ``starts_with`` matches whole subtags: ``"pl"`` matches ``pl`` and ``pl-PL``,
  not ``pli``.
- ``app_version`` compares numerically part by part (``5.9 < 5.10``); missing parts are 0 and a
  ``-``/``+`` suffix is ignored, so ``1.0.0-beta`` equals ``1.0.0`` (see
  :mod:`app.audiences.versions`). A device whose version is not a version matches none.
- ``tags``: ``contains`` one tag; ``contains_any`` at least one; ``contains_all`` every one;
  ``contains_none`` has tags and none of them is listed.
- ``attributes.<key>`` (key: 1-64 of ``A-Z a-z 0-9 _ . -``) is typed and never coerces: a
  condition only considers an attribute whose JSON type is its value's type. ``eq 5``
  matches the number 5 (and 5.0), not the string ``"5"``; ``gt 3`` compares numbers
  numerically (as 64-bit floats); ``gt "m"`` compares strings by code point; booleans take
  only ``eq``, ``ne`` and ``in``. ``in`` may mix types. ``exists true`` matches a key that is
  present with a non-null value; ``exists false`` the opposite.
- ``last_seen`` ``within_days N``: last seen at or after ``now - N days``;
  ``not_within_days N``: before it.
- ``platform``, ``timezone``, ``user_id`` and ``device_id`` compare exactly.

Missing values (three-valued logic, decided once)
-------------------------------------------------
A condition on a missing value is **false**, whatever the operator: a NULL locale, a missing
or null attribute, an attribute of another JSON type, a version that is not a version, tags
that are not a list. So ``{"field": "locale", "op": "ne", "value": "pl"}`` does not match a
device without a locale, while ``{"not": {"field": "locale", "op": "eq", "value": "pl"}}``
does. SQL follows the same two-valued logic: every compiled condition is guarded with
``IS NOT NULL`` so that it is TRUE or FALSE, never NULL, and ``NOT`` means exactly Python's
``not``.

Limits and errors
-----------------
At most 16 levels of nesting and 1,000 nodes; strings of at most 256 characters (no NUL);
lists of at most 10,000 items; numbers finite. :func:`parse_rules` collects every problem
(up to 100) and raises :class:`RuleErrors`; each :class:`RuleError` names its node with a
path such as ``rules.all[2].value`` (the root is ``rules``, list items are ``[i]``, object
members ``.name``; an unknown key is reported on the object that holds it). What parses
reads back unchanged through ``to_json()``, except that device ids come back lower-case.

SQL
---
:func:`compile_rules` returns a boolean SQLAlchemy expression over the ``device`` table's
columns (select from :class:`~app.devices.models.Device` itself, not an alias). Every value
from a rule, and every constant the compiler adds, is a bound parameter; a list is one bound
parameter (a PostgreSQL array, a JSON text on SQLite), so a rule never approaches a driver's
parameter limit. Where the dialects differ (JSON types, tag containment, list membership),
the expression holds small custom constructs compiled per dialect with ``@compiles``, so the
*same* expression runs on PostgreSQL (asyncpg, JSONB) and SQLite (aiosqlite, JSON text);
any other dialect is refused at compile time. :func:`evaluate` is the reference: same
semantics, in Python, over a mapping of the device's column values.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeAlias

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Boolean, Float, String, and_, bindparam, func, inspect, not_, or_, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator, TypeEngine, Uuid

from app.audiences.versions import version_key
from app.devices.models import Device
from app.devices.schemas import Locale, TimeZone

__all__ = [
    "AllOf",
    "AnyOf",
    "Condition",
    "Everyone",
    "Node",
    "Not",
    "Rule",
    "RuleError",
    "RuleErrors",
    "compile_rules",
    "evaluate",
    "parse_rules",
]

MAX_DEPTH: Final = 16
MAX_NODES: Final = 1000
MAX_STRING: Final = 256
MAX_LIST: Final = 10_000
MAX_DAYS: Final = 3650
MAX_ERRORS: Final = 100

ROOT: Final = "rules"

Scalar: TypeAlias = str | int | float | bool
Value: TypeAlias = Scalar | tuple[Scalar, ...] | tuple[uuid.UUID, ...]


# --------------------------------------------------------------------------------------------
# The AST


@dataclass(frozen=True, slots=True)
class Everyone:
    """Every device: only ever the whole rule, from ``{"everyone": true}``."""

    def to_json(self) -> dict[str, Any]:
        return {"everyone": True}


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Node, ...]

    def to_json(self) -> dict[str, Any]:
        return {"all": [child.to_json() for child in self.children]}


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Node, ...]

    def to_json(self) -> dict[str, Any]:
        return {"any": [child.to_json() for child in self.children]}


@dataclass(frozen=True, slots=True)
class Not:
    child: Node

    def to_json(self) -> dict[str, Any]:
        return {"not": self.child.to_json()}


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``{"field", "op", "value"}`` test, already validated by :func:`parse_rules`.

    ``value`` holds what the rule said (lists as tuples, device ids as UUIDs); normalisation
    (locale folding, version keys) happens when compiling or evaluating, so ``to_json`` gives
    back the author's spelling. ``members`` is derived: a list value's items as the
    evaluator looks them up.
    """

    field: str
    op: str
    value: Value
    # A list value as a set of normalised members, built once: the worker re-checks every
    # device at send time, and a 10,000-item list must not be rescanned for each one.
    members: frozenset[Any] = dataclasses.field(
        default=frozenset(), init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if isinstance(self.value, tuple):
            members = frozenset(_member(self.field, item) for item in self.value)
            object.__setattr__(self, "members", members)

    def to_json(self) -> dict[str, Any]:
        value: Any = self.value
        if isinstance(value, tuple):
            value = [str(item) if isinstance(item, uuid.UUID) else item for item in value]
        return {"field": self.field, "op": self.op, "value": value}

    @property
    def attribute(self) -> str | None:
        """The key of an ``attributes.<key>`` condition, else None."""
        prefix, dot, key = self.field.partition(".")
        return key if prefix == "attributes" and dot else None


Node: TypeAlias = AllOf | AnyOf | Not | Condition
Rule: TypeAlias = Everyone | Node


# --------------------------------------------------------------------------------------------
# Errors


class RuleError(ValueError):
    """One problem in a rule: ``path`` names the node (``rules.all[2].value``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message

    def __repr__(self) -> str:
        return f"RuleError(path={self.path!r}, message={self.message!r})"


class RuleErrors(ValueError):
    """Every problem found in a rule (at least one), in document order."""

    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors


# --------------------------------------------------------------------------------------------
# Parsing

_ATTRIBUTE_KEY: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_PLATFORMS: Final = ("ios", "android")
_COMPARISONS: Final = ("eq", "ne", "lt", "lte", "gt", "gte")

# Which operators each field takes. The list operators take a list, every other one value.
_OPERATORS: Final[dict[str, tuple[str, ...]]] = {
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
_LIST_OPERATORS: Final = frozenset({"in", "contains_any", "contains_all", "contains_none"})
_FIELD_NAMES: Final = ", ".join(
    "attributes.<key>" if name == "attributes" else name for name in _OPERATORS
)
_NODE_SHAPES: Final = (
    'a rule is one of {"all": [...]}, {"any": [...]}, {"not": {...}} or '
    '{"field": ..., "op": ..., "value": ...}'
)

# Device fields are validated by the same types registration uses, so a rule value is always
# something a device could hold.
_LOCALE: Final = TypeAdapter(Locale)
_TIMEZONE: Final = TypeAdapter(TimeZone)


class _Invalid(Exception):
    """A value failed validation; the message completes 'value for "<field>" ...'."""


def _show(raw: object) -> str:
    """A short, safe rendering of user input for an error message."""
    try:
        text = json.dumps(raw, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _listing(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _string(raw: object, what: str) -> str:
    if not isinstance(raw, str):
        raise _Invalid(f"must be {what}")
    if len(raw) > MAX_STRING:
        raise _Invalid(f"is {len(raw):,} characters long; at most {MAX_STRING} are allowed")
    # PostgreSQL text cannot hold NUL, and an unpaired surrogate cannot be sent as UTF-8:
    # either would fail at query time instead of here.
    if "\x00" in raw:
        raise _Invalid("must not contain NUL characters")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid("must be valid Unicode text") from None
    return raw


def _platform(raw: object) -> str:
    value = _string(raw, '"ios" or "android"')
    if value not in _PLATFORMS:
        raise _Invalid('must be "ios" or "android"')
    return value


def _locale(raw: object) -> str:
    what = 'a language tag such as "pl", "pl-PL" or "en_GB"'
    value = _string(raw, what)
    try:
        _LOCALE.validate_python(value)
    except ValidationError:
        raise _Invalid(f"must be {what}") from None
    return value


def _timezone(raw: object) -> str:
    what = 'an IANA time zone such as "Europe/Warsaw"'
    value = _string(raw, what)
    try:
        _TIMEZONE.validate_python(value)
    except ValidationError:
        raise _Invalid(f"must be {what}") from None
    return value


def _version(raw: object) -> str:
    what = 'a version such as "5.12.1"'
    value = _string(raw, what)
    if version_key(value) is None:
        raise _Invalid(f"must be {what}")
    return value


def _tag(raw: object) -> str:
    what = "a tag: 1-64 characters without surrounding spaces"
    value = _string(raw, what)
    # Registration strips tags and caps them at 64, so any other tag could never match.
    if not value or len(value) > 64 or value != value.strip():
        raise _Invalid(f"must be {what}")
    return value


def _user_id(raw: object) -> str:
    value = _string(raw, "a user id: a string of 1-256 characters")
    if not value:
        raise _Invalid("must be a user id: a string of 1-256 characters")
    return value


def _device_id(raw: object) -> uuid.UUID:
    what = 'a device id such as "0b6e8d3c-6f7a-4f5e-9a49-3f1d2c7e8b10"'
    value = _string(raw, what)
    if not _UUID.fullmatch(value):
        raise _Invalid(f"must be {what}")
    return uuid.UUID(value)


def _boolean(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise _Invalid("must be true or false")
    return raw


def _days(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_DAYS:
        raise _Invalid(f"must be a whole number of days from 1 to {MAX_DAYS}")
    return raw


def _number(raw: int | float) -> int | float:
    try:
        finite = math.isfinite(float(raw))
    except OverflowError:
        finite = False
    if not finite:
        raise _Invalid("must be a finite number within the range of a 64-bit float")
    return raw


def _attribute_value(raw: object) -> Scalar:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        return _number(raw)
    if isinstance(raw, str):
        return _string(raw, "a string, number or boolean")
    raise _Invalid("must be a string, number or boolean")


def _attribute_ordered(raw: object) -> Scalar:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _Invalid("must be a string or a number for an ordering operator")
    return _attribute_value(raw)


def _value_parser(base: str, op: str) -> Callable[[object], Any]:
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


@dataclass
class _Parser:
    errors: list[RuleError] = dataclasses.field(default_factory=list)
    nodes: int = 0
    overflowed: bool = False

    def error(self, path: str, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RuleError(path, message))
        elif len(self.errors) == MAX_ERRORS:
            self.errors.append(
                RuleError(ROOT, f"too many errors; only the first {MAX_ERRORS} are listed")
            )

    def root(self, raw: object) -> Rule | None:
        if not isinstance(raw, dict):
            self.error(ROOT, 'rules must be an object such as {"all": [...]} or {"everyone": true}')
            return None
        if "everyone" in raw:
            return self._everyone(raw)
        return self.node(raw, ROOT, 1)

    def _everyone(self, raw: dict[Any, Any]) -> Everyone | None:
        ok = True
        if raw["everyone"] is not True:
            ok = False
            self.error(
                f"{ROOT}.everyone",
                '"everyone" must be exactly true; there is no other way to say everyone',
            )
        if len(raw) != 1:
            ok = False
            others = ", ".join(_show(key) for key in raw if key != "everyone")
            self.error(ROOT, f'{{"everyone": true}} stands alone; remove the other keys ({others})')
        return Everyone() if ok else None

    def node(self, raw: object, path: str, depth: int) -> Node | None:
        if self.overflowed:
            return None
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.overflowed = True
            self.error(ROOT, f"rules have more than {MAX_NODES:,} nodes")
            return None
        if depth > MAX_DEPTH:
            self.error(path, f"rules are nested more than {MAX_DEPTH} levels deep")
            return None
        if not isinstance(raw, dict):
            self.error(path, f"must be an object: {_NODE_SHAPES}")
            return None
        if not raw:
            self.error(path, f"an empty object is not a rule: {_NODE_SHAPES}")
            return None
        if "everyone" in raw:
            self.error(
                path,
                '"everyone" is allowed only as the whole rule, spelled {"everyone": true}',
            )
            return None
        known = {"all", "any", "not", "field", "op", "value"}
        unknown = [key for key in raw if key not in known]
        for key in unknown:
            self.error(path, f"unknown key {_show(key)}: {_NODE_SHAPES}")
        kinds = [key for key in ("all", "any", "not") if key in raw]
        if any(key in raw for key in ("field", "op", "value")):
            kinds.append("condition")
        if len(kinds) > 1:
            found = ", ".join(f'"{key}"' for key in raw if key in known)
            self.error(path, f"a rule must be exactly one thing; found keys {found}")
            return None
        if unknown or not kinds:
            return None
        kind = kinds[0]
        if kind == "not":
            child = self.node(raw["not"], f"{path}.not", depth + 1)
            return Not(child) if child is not None else None
        if kind in ("all", "any"):
            return self._group(kind, raw[kind], f"{path}.{kind}", depth)
        return self._condition(raw, path)

    def _group(self, kind: str, raw: object, path: str, depth: int) -> Node | None:
        if not isinstance(raw, list) or not raw:
            self.error(path, f'"{kind}" must be a non-empty list of rules')
            return None
        children = [self.node(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(raw)]
        if any(child is None for child in children):
            return None
        valid = tuple(child for child in children if child is not None)
        return AllOf(valid) if kind == "all" else AnyOf(valid)

    def _condition(self, raw: dict[Any, Any], path: str) -> Condition | None:
        missing = [key for key in ("field", "op", "value") if key not in raw]
        if missing:
            names = " and ".join(f'"{key}"' for key in missing)
            self.error(path, f'a condition needs "field", "op" and "value"; {names} missing')
            return None
        name, base = self._field(raw["field"], f"{path}.field")
        if base is None or name is None:
            return None
        op = self._op(raw["op"], f"{path}.op", name, base)
        if op is None:
            return None
        value = self._value(raw["value"], f"{path}.value", name, base, op)
        return None if value is None else Condition(name, op, value)

    def _field(self, raw: object, path: str) -> tuple[str | None, str | None]:
        if not isinstance(raw, str):
            self.error(path, f"field must be a string; fields are: {_FIELD_NAMES}")
            return None, None
        if raw in _OPERATORS and raw != "attributes":
            return raw, raw
        prefix, dot, key = raw.partition(".")
        if prefix == "attributes" and dot:
            if _ATTRIBUTE_KEY.fullmatch(key):
                return raw, "attributes"
            self.error(path, f"attribute name {_show(key)} must be 1-64 of A-Z a-z 0-9 _ . -")
            return None, None
        self.error(path, f"unknown field {_show(raw)}; fields are: {_FIELD_NAMES}")
        return None, None

    def _op(self, raw: object, path: str, name: str, base: str) -> str | None:
        allowed = _OPERATORS[base]
        hint = f"use {_listing(allowed)}"
        if not isinstance(raw, str):
            self.error(path, f'operator must be a string; for field "{name}" {hint}')
            return None
        if raw not in allowed:
            self.error(path, f'operator {_show(raw)} does not apply to field "{name}"; {hint}')
            return None
        return raw

    def _value(self, raw: object, path: str, name: str, base: str, op: str) -> Value | None:
        parse = _value_parser(base, op)
        if op not in _LIST_OPERATORS:
            try:
                value: Scalar = parse(raw)
            except _Invalid as invalid:
                self.error(path, f'value for "{name}" {invalid}')
                return None
            return value
        if not isinstance(raw, list) or not raw:
            self.error(path, f'value for "{name}" with "{op}" must be a non-empty list')
            return None
        if len(raw) > MAX_LIST:
            self.error(
                path,
                f'value for "{name}" has {len(raw):,} items; at most {MAX_LIST:,} are allowed',
            )
            return None
        items: list[Any] = []
        ok = True
        for i, item in enumerate(raw):
            try:
                items.append(parse(item))
            except _Invalid as invalid:
                ok = False
                self.error(f"{path}[{i}]", f'value for "{name}" {invalid}')
        return tuple(items) if ok else None


def parse_rules(raw: object) -> Rule:
    """Validate decoded JSON into a :data:`Rule`, or raise :class:`RuleErrors` listing every
    problem. Fails closed: only ``{"everyone": true}`` at the root means everyone."""
    parser = _Parser()
    rule = parser.root(raw)
    if parser.errors or rule is None:
        raise RuleErrors(parser.errors or [RuleError(ROOT, "not a valid rule")])
    return rule


# --------------------------------------------------------------------------------------------
# Shared semantics: value normalisation used by both the SQL compiler and the evaluator

# ASCII-only case folding: PostgreSQL's lower() under COLLATE "C" and SQLite's lower() fold
# exactly A-Z, so Python must not fold more (e.g. the Kelvin sign K to k).
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold_locale(value: str) -> str:
    return value.replace("_", "-").translate(_ASCII_LOWER)


def _attribute_kind(value: object) -> str | None:
    """The JSON type a typed attribute condition looks at, or None for null/absent/other."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _key(value: str) -> str:
    key = version_key(value)
    # parse_rules guarantees this; a hand-built Condition must not compile to "matches none".
    if key is None:
        raise ValueError(f"not a version: {value!r}")
    return key


def _cutoff(now: datetime, days: Value) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    assert isinstance(days, int)
    return now - timedelta(days=days)


# --------------------------------------------------------------------------------------------
# SQL: dialect-specific constructs
#
# Each construct keeps its user values in bind parameters created at construction time and
# listed in _traverse_internals, so SQLAlchemy's statement cache keys on the shape and
# re-extracts the values. Constants the compilers add (JSON type names, "_" and "-") are
# bound at compile time; being constant, a cached statement reuses them correctly.

_DIALECTS: Final = ("postgresql", "sqlite")


def _dialect_of(compiler: SQLCompiler) -> str:
    name = compiler.dialect.name
    if name == "default":
        # str(expression) without a dialect: render the SQLite form for reading.
        return "sqlite"
    if name not in _DIALECTS:
        raise CompileError(f"audience rules compile for PostgreSQL and SQLite, not {name}")
    return name


def _const(compiler: SQLCompiler, value: str, **kw: Any) -> str:
    return compiler.process(bindparam(None, value, type_=String(), unique=True), **kw)


class _ListParam(TypeDecorator[Sequence[Any]]):
    """A whole list as one parameter: a typed array on PostgreSQL, JSON text on SQLite."""

    impl = String
    cache_ok = True

    def __init__(self, item_type: TypeEngine[Any]) -> None:
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(self.item_type))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Sequence[Any] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return list(value)
        # Items take the column type's own storage form (a UUID is 32 hex digits on SQLite).
        process = self.item_type.dialect_impl(dialect).bind_processor(dialect)
        return json.dumps([process(item) if process else item for item in value])


class _JsonKey(TypeDecorator[str]):
    """An attribute key: bound as the key for ``->`` on PostgreSQL, as a path on SQLite."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or dialect.name == "postgresql":
            return value
        # Keys are restricted to [A-Za-z0-9_.-], so quoting needs no escaping.
        return f'$."{value}"'


class _InList(ColumnElement[bool]):
    """``expr`` equals one of ``values`` (non-NULL), with the whole list as one parameter."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [
        ("expr", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
    ]

    def __init__(
        self, expr: ColumnElement[Any], values: Iterable[Any], item_type: TypeEngine[Any]
    ) -> None:
        self.expr = expr
        self.values: BindParameter[Any] = bindparam(
            None, list(values), type_=_ListParam(item_type), unique=True
        )


@compiles(_InList)
def _in_list(element: _InList, compiler: SQLCompiler, **kw: Any) -> str:
    expr = compiler.process(element.expr, **kw)
    values = compiler.process(element.values, **kw)
    if _dialect_of(compiler) == "postgresql":
        return f"({expr} = ANY ({values}))"
    return f"({expr} IN (SELECT value FROM json_each({values})))"


class _IsJsonArray(ColumnElement[bool]):
    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("expr", InternalTraversal.dp_clauseelement)]

    def __init__(self, expr: ColumnElement[Any]) -> None:
        self.expr = expr


@compiles(_IsJsonArray)
def _is_json_array(element: _IsJsonArray, compiler: SQLCompiler, **kw: Any) -> str:
    expr = compiler.process(element.expr, **kw)
    array = _const(compiler, "array", **kw)
    if _dialect_of(compiler) == "postgresql":
        return f"(jsonb_typeof({expr}) = {array})"
    return f"(json_type({expr}) = {array})"


class _TagsMatch(ColumnElement[bool]):
    """The JSON array ``tags`` holds any (``mode="any"``) or all of ``values`` as strings."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [
        ("tags", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
        ("mode", InternalTraversal.dp_string),
    ]

    def __init__(self, tags: ColumnElement[Any], values: Iterable[str], mode: str) -> None:
        self.tags = tags
        self.values: BindParameter[Any] = bindparam(
            None, list(values), type_=_ListParam(String()), unique=True
        )
        self.mode = mode


@compiles(_TagsMatch)
def _tags_match(element: _TagsMatch, compiler: SQLCompiler, **kw: Any) -> str:
    tags = compiler.process(element.tags, **kw)
    values = compiler.process(element.values, **kw)
    if _dialect_of(compiler) == "postgresql":
        # ?| and ?& test top-level string elements, which a GIN index on tags can serve.
        return f"({tags} {'?|' if element.mode == 'any' else '?&'} {values})"
    text = _const(compiler, "text", **kw)
    if element.mode == "any":
        return (
            f"(EXISTS (SELECT t.value FROM json_each({tags}) AS t WHERE t.type = {text}"
            f" AND t.value IN (SELECT w.value FROM json_each({values}) AS w)))"
        )
    return (
        f"(NOT EXISTS (SELECT w.value FROM json_each({values}) AS w WHERE NOT EXISTS"
        f" (SELECT t.value FROM json_each({tags}) AS t WHERE t.type = {text}"
        f" AND t.value = w.value)))"
    )


_TYPES: Final[dict[str, TypeEngine[Any]]] = {
    "string": String(),
    "number": Float(),
    "boolean": Boolean(),
    "present": String(),
}


class _Attribute(ColumnElement[Any]):
    """``attributes[key]`` as a SQL value of one JSON type, NULL when it has another type.

    ``kind`` is ``string``, ``number`` (a double) or ``boolean``; ``present`` gives the JSON
    type name, NULL when the key is missing or null. Never a cast of a value of the wrong
    type: PostgreSQL does not promise to evaluate an AND left to right, CASE it does.
    """

    inherit_cache = True
    _traverse_internals = [
        ("attributes", InternalTraversal.dp_clauseelement),
        ("json_key", InternalTraversal.dp_clauseelement),
        ("kind", InternalTraversal.dp_string),
    ]

    def __init__(self, attributes: ColumnElement[Any], key: str, kind: str) -> None:
        self.attributes = attributes
        self.json_key: BindParameter[str] = bindparam(None, key, type_=_JsonKey(), unique=True)
        self.kind = kind
        self.type = _TYPES[kind]


# JSON type names each dialect reports for a kind: jsonb_typeof vs SQLite's json_type.
_PG_KIND: Final = {"string": "string", "number": "number", "boolean": "boolean"}
_SQLITE_KINDS: Final = {
    "string": ("text",),
    "number": ("integer", "real"),
    "boolean": ("true", "false"),
}


@compiles(_Attribute)
def _attribute(element: _Attribute, compiler: SQLCompiler, **kw: Any) -> str:
    attributes = compiler.process(element.attributes, **kw)
    key = compiler.process(element.json_key, **kw)
    # A constant is bound only where it is rendered: a processed but unrendered parameter
    # would still be sent, and asyncpg refuses a surplus argument.
    if _dialect_of(compiler) == "postgresql":
        json_type = f"jsonb_typeof({attributes} -> {key})"
        if element.kind == "present":
            return f"NULLIF({json_type}, {_const(compiler, 'null', **kw)})"
        kind = _const(compiler, _PG_KIND[element.kind], **kw)
        text = f"({attributes} ->> {key})"
        if element.kind == "string":
            # COLLATE "C": code point order, as SQLite's BINARY and Python's str compare.
            return f'((CASE WHEN {json_type} = {kind} THEN {text} END) COLLATE "C")'
        cast = "DOUBLE PRECISION" if element.kind == "number" else "BOOLEAN"
        return f"(CASE WHEN {json_type} = {kind} THEN CAST({text} AS {cast}) END)"
    json_type = f"json_type({attributes}, {key})"
    if element.kind == "present":
        return f"NULLIF({json_type}, {_const(compiler, 'null', **kw)})"
    kinds = ", ".join(_const(compiler, name, **kw) for name in _SQLITE_KINDS[element.kind])
    value = f"json_extract({attributes}, {key})"
    if element.kind == "number":
        value = f"CAST({value} AS REAL)"
    return f"(CASE WHEN {json_type} IN ({kinds}) THEN {value} END)"


class _FoldedLocale(ColumnElement[str]):
    """The locale with ``_`` read as ``-`` and A-Z lowered (see :func:`_fold_locale`)."""

    inherit_cache = True
    type = String()
    _traverse_internals = [("expr", InternalTraversal.dp_clauseelement)]

    def __init__(self, expr: ColumnElement[Any]) -> None:
        self.expr = expr


@compiles(_FoldedLocale)
def _folded_locale(element: _FoldedLocale, compiler: SQLCompiler, **kw: Any) -> str:
    expr = compiler.process(element.expr, **kw)
    underscore = _const(compiler, "_", **kw)
    dash = _const(compiler, "-", **kw)
    replaced = f"replace({expr}, {underscore}, {dash})"
    if _dialect_of(compiler) == "postgresql":
        # Under "C", lower() folds ASCII only, whatever the database's collation.
        return f'lower({replaced} COLLATE "C")'
    return f"lower({replaced})"


# --------------------------------------------------------------------------------------------
# SQL: compiling the tree


# The device table's columns, typed as SQL expressions (sqlmodel's col() types them as Mapped,
# which the constructs above cannot take).
_DEVICE: Final = inspect(Device).columns


def compile_rules(rule: Rule, *, now: datetime) -> ColumnElement[bool]:
    """Compile a parsed rule to a WHERE clause over the ``device`` table.

    The expression is TRUE or FALSE for every row (never NULL) and matches exactly the
    devices :func:`evaluate` accepts. ``now`` (timezone-aware) anchors ``last_seen``. Every
    value is a bound parameter. Works on PostgreSQL and SQLite; other dialects raise
    ``CompileError`` when the statement is compiled.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    if isinstance(rule, Everyone):
        return true()
    return _sql(rule, now)


def _sql(node: Node, now: datetime) -> ColumnElement[bool]:
    if isinstance(node, AllOf):
        return and_(*(_sql(child, now) for child in node.children))
    if isinstance(node, AnyOf):
        return or_(*(_sql(child, now) for child in node.children))
    if isinstance(node, Not):
        # Sound because every condition below is two-valued (see _guarded).
        return not_(_sql(node.child, now))
    return _sql_condition(node, now)


def _guarded(expr: ColumnElement[Any], test: ColumnElement[bool]) -> ColumnElement[bool]:
    """``test`` made two-valued: FALSE where ``expr`` is NULL (a missing value).

    ``test`` is non-NULL whenever ``expr`` is, so ``expr IS NOT NULL AND test`` is never
    NULL, and NOT of it is true exactly where Python's ``not`` is.
    """
    return and_(expr.is_not(None), test)


def _compare(
    expr: ColumnElement[Any], op: str, value: Value, item_type: TypeEngine[Any]
) -> ColumnElement[bool]:
    if op == "in":
        assert isinstance(value, tuple)
        return _guarded(expr, _InList(expr, value, item_type))
    test: ColumnElement[bool] = {
        "eq": expr.__eq__,
        "ne": expr.__ne__,
        "lt": expr.__lt__,
        "lte": expr.__le__,
        "gt": expr.__gt__,
        "gte": expr.__ge__,
    }[op](value)
    return _guarded(expr, test)


def _sql_condition(node: Condition, now: datetime) -> ColumnElement[bool]:
    name, op, value = node.field, node.op, node.value
    if name == "platform":
        return _compare(_DEVICE.platform, op, value, String())
    if name == "timezone":
        return _compare(_DEVICE.timezone, op, value, String())
    if name == "user_id":
        return _compare(_DEVICE.user_id, op, value, String())
    if name == "is_test_device":
        return _compare(_DEVICE.is_test_device, op, value, Boolean())
    if name == "device_id":
        return _compare(_DEVICE.id, op, value, Uuid())
    if name == "locale":
        return _sql_locale(op, value)
    if name == "app_version":
        if isinstance(value, tuple):
            keys: Value = tuple(_key(str(item)) for item in value)
        else:
            keys = _key(str(value))
        return _compare(_DEVICE.app_version_key, op, keys, String())
    if name == "tags":
        return _sql_tags(op, value)
    if name == "last_seen":
        seen = _DEVICE.last_seen_at
        cutoff = _cutoff(now, value)
        return _guarded(seen, seen >= cutoff if op == "within_days" else seen < cutoff)
    key = node.attribute
    if key is None:
        raise ValueError(f"unknown field {name!r}; build conditions with parse_rules")
    return _sql_attribute(key, op, value)


def _sql_locale(op: str, value: Value) -> ColumnElement[bool]:
    locale = _FoldedLocale(_DEVICE.locale)
    if isinstance(value, tuple):
        folded: Value = tuple(_fold_locale(str(item)) for item in value)
    else:
        folded = _fold_locale(str(value))
    if op != "starts_with":
        return _compare(locale, op, folded, String())
    assert isinstance(folded, str)
    # Whole subtags only: "pl" is the locale itself or a prefix followed by "-".
    head = func.substr(locale, 1, len(folded) + 1)
    return _guarded(locale, or_(locale == folded, head == folded + "-"))


def _sql_tags(op: str, value: Value) -> ColumnElement[bool]:
    tags = _DEVICE.tags
    values = value if isinstance(value, tuple) else (value,)
    strings = [str(item) for item in values]
    if op == "contains_none":
        test: ColumnElement[bool] = not_(_TagsMatch(tags, strings, "any"))
    else:
        test = _TagsMatch(tags, strings, "all" if op == "contains_all" else "any")
    # Tags that are not a JSON array count as missing: every tags condition is false on them.
    return _guarded(tags, and_(_IsJsonArray(tags), test))


def _sql_attribute(key: str, op: str, value: Value) -> ColumnElement[bool]:
    attributes = _DEVICE.attributes
    if op == "exists":
        present = _Attribute(attributes, key, "present")
        return present.is_not(None) if value is True else present.is_(None)
    if op == "in":
        assert isinstance(value, tuple)
        by_kind: dict[str, list[Any]] = {}
        for item in value:
            kind = _attribute_kind(item)
            assert kind is not None
            by_kind.setdefault(kind, []).append(_bound(item))
        return or_(
            *(
                _compare(_Attribute(attributes, key, kind), "in", tuple(items), _TYPES[kind])
                for kind, items in by_kind.items()
            )
        )
    kind = _attribute_kind(value)
    assert kind is not None
    return _compare(_Attribute(attributes, key, kind), op, _bound(value), _TYPES[kind])


def _bound(value: object) -> Scalar:
    """An attribute value as bound: numbers as doubles, which is how SQL compares them."""
    if isinstance(value, bool | str):
        return value
    assert isinstance(value, int | float)
    return float(value)


# --------------------------------------------------------------------------------------------
# Python: the reference evaluator


def evaluate(rule: Rule, device: Mapping[str, Any], *, now: datetime) -> bool:
    """Whether ``device`` matches ``rule``, with exactly the semantics of the compiled SQL.

    ``device`` maps the ``device`` table's column names to values as loaded from the
    database (``id``, ``platform``, ``locale``, ``timezone``, ``app_version_key``, ``tags``,
    ``attributes``, ``last_seen_at``, ``user_id``, ``is_test_device``); e.g.
    ``device.model_dump()``. A missing key counts as NULL. When ``app_version_key`` is
    absent it is derived from ``app_version``, as registration does.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    if isinstance(rule, Everyone):
        return True
    return _evaluate(rule, device, now)


def _evaluate(node: Node, device: Mapping[str, Any], now: datetime) -> bool:
    if isinstance(node, AllOf):
        return all(_evaluate(child, device, now) for child in node.children)
    if isinstance(node, AnyOf):
        return any(_evaluate(child, device, now) for child in node.children)
    if isinstance(node, Not):
        return not _evaluate(node.child, device, now)
    return _evaluate_condition(node, device, now)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _member(name: str, item: Scalar | uuid.UUID) -> Any:
    """A list item as the evaluator looks it up (see :attr:`Condition.members`)."""
    if name == "locale":
        return _fold_locale(str(item))
    if name == "app_version":
        return _key(str(item))
    if name.startswith("attributes."):
        # Numbers compare as doubles, as in SQL; the kind keeps True apart from 1.
        if isinstance(item, int | float) and not isinstance(item, bool):
            return ("number", float(item))
        return (_attribute_kind(item), item)
    return item


def _py_compare(actual: Any, op: str, value: Any) -> bool:
    """``actual OP value`` for a non-None ``actual`` of the condition's type."""
    if op == "eq":
        return bool(actual == value)
    if op == "ne":
        return bool(actual != value)
    if op == "lt":
        return bool(actual < value)
    if op == "lte":
        return bool(actual <= value)
    if op == "gt":
        return bool(actual > value)
    return bool(actual >= value)


def _evaluate_condition(node: Condition, device: Mapping[str, Any], now: datetime) -> bool:
    name, op, value = node.field, node.op, node.value
    if name in ("platform", "timezone", "user_id"):
        actual = _text(device.get(name))
        if actual is None:
            return False
        return actual in node.members if op == "in" else _py_compare(actual, op, value)
    if name == "is_test_device":
        flag = device.get("is_test_device")
        return isinstance(flag, bool) and flag is value
    if name == "device_id":
        raw_id = device.get("id")
        if raw_id is None:
            return False
        return (raw_id if isinstance(raw_id, uuid.UUID) else uuid.UUID(str(raw_id))) in node.members
    if name == "locale":
        locale = _text(device.get("locale"))
        if locale is None:
            return False
        folded = _fold_locale(locale)
        if op == "in":
            return folded in node.members
        wanted = _fold_locale(str(value))
        if op == "starts_with":
            return folded == wanted or folded.startswith(wanted + "-")
        return _py_compare(folded, op, wanted)
    if name == "app_version":
        if "app_version_key" in device:
            key = _text(device.get("app_version_key"))
        else:
            raw_version = _text(device.get("app_version"))
            key = version_key(raw_version) if raw_version is not None else None
        if key is None:
            return False
        return key in node.members if op == "in" else _py_compare(key, op, _key(str(value)))
    if name == "tags":
        tags = device.get("tags")
        if not isinstance(tags, list):
            return False
        have = {tag for tag in tags if isinstance(tag, str)}
        wanted_tags = node.members if op != "contains" else {value}
        if op == "contains_all":
            return wanted_tags <= have
        hit = not have.isdisjoint(wanted_tags)
        return not hit if op == "contains_none" else hit
    if name == "last_seen":
        seen = device.get("last_seen_at")
        if not isinstance(seen, datetime):
            return False
        cutoff = _cutoff(now, value)
        return seen >= cutoff if op == "within_days" else seen < cutoff
    if node.attribute is None:
        raise ValueError(f"unknown field {name!r}; build conditions with parse_rules")
    return _evaluate_attribute(node, device.get("attributes"), node.attribute)


def _evaluate_attribute(node: Condition, attributes: object, key: str) -> bool:
    actual = attributes.get(key) if isinstance(attributes, dict) else None
    if node.op == "exists":
        return (actual is not None) is node.value
    kind = _attribute_kind(actual)
    if kind is None:
        return False
    if kind == "number":
        assert isinstance(actual, int | float)
        try:
            actual = float(actual)
        except OverflowError:
            # An integer beyond a double's range: PostgreSQL refuses the cast outright.
            return False
    if node.op == "in":
        return (kind, actual) in node.members
    value = node.value
    if _attribute_kind(value) != kind:
        return False
    if kind == "number":
        assert isinstance(value, int | float)
        value = float(value)
    return _py_compare(actual, node.op, value)
