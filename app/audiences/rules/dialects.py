"""SQL constructs that render differently on PostgreSQL and SQLite, so that one expression
runs on both: list membership, JSON arrays, tag containment, typed attribute values and
folded locales.

Contract: each construct compiles for PostgreSQL (JSONB, arrays) and SQLite (JSON text);
any other dialect raises ``CompileError``, and a statement compiled without a dialect
(``str()``) renders the SQLite form. User values are bound parameters made at construction,
a list being one parameter. An :class:`Attribute` is NULL unless the attribute has the JSON
type asked for, never a failed cast. Making a condition two-valued (FALSE, not NULL, on a
missing value) is left to the compiler that uses these constructs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy import Boolean, Float, String, bindparam
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator, TypeEngine

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


class InList(ColumnElement[bool]):
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


@compiles(InList)
def _in_list(element: InList, compiler: SQLCompiler, **kw: Any) -> str:
    expr = compiler.process(element.expr, **kw)
    values = compiler.process(element.values, **kw)
    if _dialect_of(compiler) == "postgresql":
        return f"({expr} = ANY ({values}))"
    return f"({expr} IN (SELECT value FROM json_each({values})))"


class IsJsonArray(ColumnElement[bool]):
    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("expr", InternalTraversal.dp_clauseelement)]

    def __init__(self, expr: ColumnElement[Any]) -> None:
        self.expr = expr


@compiles(IsJsonArray)
def _is_json_array(element: IsJsonArray, compiler: SQLCompiler, **kw: Any) -> str:
    expr = compiler.process(element.expr, **kw)
    array = _const(compiler, "array", **kw)
    if _dialect_of(compiler) == "postgresql":
        return f"(jsonb_typeof({expr}) = {array})"
    return f"(json_type({expr}) = {array})"


class TagsMatch(ColumnElement[bool]):
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


@compiles(TagsMatch)
def _tags_match(element: TagsMatch, compiler: SQLCompiler, **kw: Any) -> str:
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


SQL_TYPES: Final[dict[str, TypeEngine[Any]]] = {
    "string": String(),
    "number": Float(),
    "boolean": Boolean(),
    "present": String(),
}


class Attribute(ColumnElement[Any]):
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
        self.type = SQL_TYPES[kind]


# JSON type names each dialect reports for a kind: jsonb_typeof vs SQLite's json_type.
_PG_KIND: Final = {"string": "string", "number": "number", "boolean": "boolean"}
_SQLITE_KINDS: Final = {
    "string": ("text",),
    "number": ("integer", "real"),
    "boolean": ("true", "false"),
}


@compiles(Attribute)
def _attribute(element: Attribute, compiler: SQLCompiler, **kw: Any) -> str:
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


class FoldedLocale(ColumnElement[str]):
    """The locale with ``_`` read as ``-`` and A-Z lowered, as
    :func:`~app.audiences.rules.values.fold_locale` folds it in Python."""

    inherit_cache = True
    type = String()
    _traverse_internals = [("expr", InternalTraversal.dp_clauseelement)]

    def __init__(self, expr: ColumnElement[Any]) -> None:
        self.expr = expr


@compiles(FoldedLocale)
def _folded_locale(element: FoldedLocale, compiler: SQLCompiler, **kw: Any) -> str:
    expr = compiler.process(element.expr, **kw)
    underscore = _const(compiler, "_", **kw)
    dash = _const(compiler, "-", **kw)
    replaced = f"replace({expr}, {underscore}, {dash})"
    if _dialect_of(compiler) == "postgresql":
        # Under "C", lower() folds ASCII only, whatever the database's collation.
        return f'lower({replaced} COLLATE "C")'
    return f"lower({replaced})"
