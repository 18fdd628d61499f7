"""Parsing: decoded JSON into a rule tree, or every problem in it, each named by its path.

Contract of :func:`parse_rules`: it fails closed (only ``{"everyone": true}`` at the root
means everyone; anything malformed is an error, never a wider audience), checks every field,
operator and value against :mod:`~app.audiences.rules.fields`, and raises
:class:`RuleErrors` listing every problem in document order (the first ``MAX_ERRORS``,
then one saying there were more). A path starts at ``rules``; list items are ``[i]`` and
object members ``.name`` (``rules.all[2].value``); an unknown key is reported on the object
that holds it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from app.audiences.rules.fields import (
    ATTRIBUTE_KEY,
    FIELD_NAMES,
    LIST_OPERATORS,
    MAX_LIST,
    OPERATORS,
    Invalid,
    value_parser,
)
from app.audiences.rules.tree import AllOf, AnyOf, Condition, Everyone, Node, Not, Rule
from app.audiences.rules.values import Scalar, Value

MAX_DEPTH: Final = 16
MAX_NODES: Final = 1000
MAX_ERRORS: Final = 100

ROOT: Final = "rules"

_NODE_SHAPES: Final = (
    'a rule is one of {"all": [...]}, {"any": [...]}, {"not": {...}} or '
    '{"field": ..., "op": ..., "value": ...}'
)


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


def _show(raw: object) -> str:
    """A short, safe rendering of user input for an error message."""
    try:
        text = json.dumps(raw, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _listing(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


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
            self.error(path, f"field must be a string; fields are: {FIELD_NAMES}")
            return None, None
        if raw in OPERATORS and raw != "attributes":
            return raw, raw
        prefix, dot, key = raw.partition(".")
        if prefix == "attributes" and dot:
            if ATTRIBUTE_KEY.fullmatch(key):
                return raw, "attributes"
            self.error(path, f"attribute name {_show(key)} must be 1-64 of A-Z a-z 0-9 _ . -")
            return None, None
        self.error(path, f"unknown field {_show(raw)}; fields are: {FIELD_NAMES}")
        return None, None

    def _op(self, raw: object, path: str, name: str, base: str) -> str | None:
        allowed = OPERATORS[base]
        hint = f"use {_listing(allowed)}"
        if not isinstance(raw, str):
            self.error(path, f'operator must be a string; for field "{name}" {hint}')
            return None
        if raw not in allowed:
            self.error(path, f'operator {_show(raw)} does not apply to field "{name}"; {hint}')
            return None
        return raw

    def _value(self, raw: object, path: str, name: str, base: str, op: str) -> Value | None:
        parse = value_parser(base, op)
        if op not in LIST_OPERATORS:
            try:
                value: Scalar = parse(raw)
            except Invalid as invalid:
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
            except Invalid as invalid:
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
