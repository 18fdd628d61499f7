"""Python: the reference evaluator, whether one device matches a parsed rule tree.

Contract of :func:`evaluate`: exactly the semantics of the SQL that
:func:`~app.audiences.rules.compile.compile_rules` produces, over a mapping of the device's
column values. Neither the service nor the workers call it: audiences are always selected
in SQL (:func:`app.audiences.service.audience_filter`); the tests hold the compiled SQL to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.audiences.rules.tree import AllOf, AnyOf, Condition, Everyone, Node, Not, Rule
from app.audiences.rules.values import (
    attribute_kind,
    fold_locale,
    last_seen_cutoff,
    rule_version_key,
)
from app.audiences.versions import version_key


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
        folded = fold_locale(locale)
        if op == "in":
            return folded in node.members
        wanted = fold_locale(str(value))
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
        if op == "in":
            return key in node.members
        return _py_compare(key, op, rule_version_key(str(value)))
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
        cutoff = last_seen_cutoff(now, value)
        return seen >= cutoff if op == "within_days" else seen < cutoff
    if node.attribute is None:
        raise ValueError(f"unknown field {name!r}; build conditions with parse_rules")
    return _evaluate_attribute(node, device.get("attributes"), node.attribute)


def _evaluate_attribute(node: Condition, attributes: object, key: str) -> bool:
    actual = attributes.get(key) if isinstance(attributes, dict) else None
    if node.op == "exists":
        return (actual is not None) is node.value
    kind = attribute_kind(actual)
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
    if attribute_kind(value) != kind:
        return False
    if kind == "number":
        assert isinstance(value, int | float)
        value = float(value)
    return _py_compare(actual, node.op, value)
