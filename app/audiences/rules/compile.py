"""SQL: a parsed rule tree compiled to a WHERE clause over the ``device`` table.

Holds :func:`compile_rules` (its docstring is the contract) and the per-field translation
behind it. Each condition is guarded so that it is FALSE, never NULL, on a missing value,
which is what lets ``NOT`` mean Python's ``not``; where the dialects differ, the constructs
of :mod:`~app.audiences.rules.dialects` render the difference.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import Boolean, String, and_, func, inspect, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine, Uuid

from app.audiences.rules.dialects import (
    SQL_TYPES,
    Attribute,
    FoldedLocale,
    InList,
    IsJsonArray,
    TagsMatch,
)
from app.audiences.rules.tree import AllOf, AnyOf, Condition, Everyone, Node, Not, Rule
from app.audiences.rules.values import (
    Scalar,
    Value,
    attribute_kind,
    fold_locale,
    last_seen_cutoff,
    rule_version_key,
)
from app.devices.models import Device

# The device table's columns, typed as SQL expressions (sqlmodel's col() types them as Mapped,
# which the dialect constructs cannot take).
_DEVICE: Final = inspect(Device).columns


def compile_rules(rule: Rule, *, now: datetime) -> ColumnElement[bool]:
    """Compile a parsed rule to a WHERE clause over the ``device`` table.

    The expression is TRUE or FALSE for every row (never NULL) and matches exactly the
    devices :func:`~app.audiences.rules.evaluator.evaluate` accepts. ``now``
    (timezone-aware) anchors ``last_seen``. Every value is a bound parameter. Works on
    PostgreSQL and SQLite; other dialects raise ``CompileError`` when the statement is
    compiled.
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
        return _guarded(expr, InList(expr, value, item_type))
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
            keys: Value = tuple(rule_version_key(str(item)) for item in value)
        else:
            keys = rule_version_key(str(value))
        return _compare(_DEVICE.app_version_key, op, keys, String())
    if name == "tags":
        return _sql_tags(op, value)
    if name == "last_seen":
        seen = _DEVICE.last_seen_at
        cutoff = last_seen_cutoff(now, value)
        return _guarded(seen, seen >= cutoff if op == "within_days" else seen < cutoff)
    key = node.attribute
    if key is None:
        raise ValueError(f"unknown field {name!r}; build conditions with parse_rules")
    return _sql_attribute(key, op, value)


def _sql_locale(op: str, value: Value) -> ColumnElement[bool]:
    locale = FoldedLocale(_DEVICE.locale)
    if isinstance(value, tuple):
        folded: Value = tuple(fold_locale(str(item)) for item in value)
    else:
        folded = fold_locale(str(value))
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
        test: ColumnElement[bool] = not_(TagsMatch(tags, strings, "any"))
    else:
        test = TagsMatch(tags, strings, "all" if op == "contains_all" else "any")
    # Tags that are not a JSON array count as missing: every tags condition is false on them.
    return _guarded(tags, and_(IsJsonArray(tags), test))


def _sql_attribute(key: str, op: str, value: Value) -> ColumnElement[bool]:
    attributes = _DEVICE.attributes
    if op == "exists":
        present = Attribute(attributes, key, "present")
        return present.is_not(None) if value is True else present.is_(None)
    if op == "in":
        assert isinstance(value, tuple)
        by_kind: dict[str, list[Any]] = {}
        for item in value:
            kind = attribute_kind(item)
            assert kind is not None
            by_kind.setdefault(kind, []).append(_bound(item))
        return or_(
            *(
                _compare(Attribute(attributes, key, kind), "in", tuple(items), SQL_TYPES[kind])
                for kind, items in by_kind.items()
            )
        )
    kind = attribute_kind(value)
    assert kind is not None
    return _compare(Attribute(attributes, key, kind), op, _bound(value), SQL_TYPES[kind])


def _bound(value: object) -> Scalar:
    """An attribute value as bound: numbers as doubles, which is how SQL compares them."""
    if isinstance(value, bool | str):
        return value
    assert isinstance(value, int | float)
    return float(value)
