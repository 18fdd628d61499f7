"""The parsed rule tree: immutable nodes that :func:`~app.audiences.rules.parse.parse_rules`
builds and the compiler and evaluator walk.

Contract: build trees with ``parse_rules``, which validates every field, operator and
value; the nodes themselves check nothing.
``to_json()`` gives back the author's spelling, except that device ids come back lower-case.
``Everyone`` is only ever the whole rule.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any, TypeAlias

from app.audiences.rules.values import Value, member


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
    """One ``{"field", "op", "value"}`` test, already validated by ``parse_rules``.

    ``value`` holds what the rule said (lists as tuples, device ids as UUIDs); normalisation
    (locale folding, version keys) happens when compiling or evaluating, so ``to_json`` gives
    back the author's spelling. ``members`` is derived: a list value's items as the
    evaluator looks them up.
    """

    field: str
    op: str
    value: Value
    # A list value as a set of normalised members, built once: the evaluator tests one
    # condition against many devices (the tests hold the compiled SQL to it over whole
    # device populations), and a 10,000-item list must not be rescanned for each one.
    members: frozenset[Any] = dataclasses.field(
        default=frozenset(), init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if isinstance(self.value, tuple):
            members = frozenset(member(self.field, item) for item in self.value)
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
