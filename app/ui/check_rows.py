"""Wave checks as the form's repeatable rows: what was typed, the API's `rollout.checks`
it stands for, and back (pure).

A row keeps every value as typed, so a refused form comes back as it was. Its JSON is
handed to the same `CheckSpec` the API validates; only what cannot even be read as a number
is said here. A condition is one bound and an optional second ("< 0.05", "and >= 0"): the
two a stored check can hold at most in practice; a stored check with more is refused for
editing here rather than shown with a bound missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.checks.spec import MAX_CHECKS, OPERATORS

SOURCES = ("builtin", "prometheus", "http")
BUILTINS = ("opens_per_second", "failure_rate")
SIGNS = {"lt": "<", "lte": "≤", "gt": ">", "gte": "≥"}
# The posted columns, one value per row each; every row posts every one of them.
COLUMNS = (
    "check_name",
    "check_source",
    "check_builtin",
    "check_url",
    "check_query",
    "check_json_field",
    "check_op",
    "check_bound",
    "check_op2",
    "check_bound2",
    "check_interval",
    "check_failure_limit",
)
_TYPED = (
    "check_name",
    "check_url",
    "check_query",
    "check_json_field",
    "check_bound",
    "check_bound2",
    "check_interval",
    "check_failure_limit",
)
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


@dataclass
class Check:
    name: str = ""
    source: str = "builtin"
    builtin: str = "opens_per_second"
    url: str = ""
    query: str = ""
    json_field: str = ""
    op: str = "lt"
    bound: str = ""
    op2: str = ""
    bound2: str = ""
    interval: str = ""
    failure_limit: str = ""

    @property
    def blank(self) -> bool:
        """Nothing typed (the selects' defaults alone are not a check)."""
        return not any(
            getattr(self, n).strip()
            for n in (
                "name",
                "url",
                "query",
                "json_field",
                "bound",
                "bound2",
                "interval",
                "failure_limit",
            )
        )

    def to_json(self) -> tuple[dict[str, Any], list[str]]:
        """The check as the API's JSON, and what could not be read as typed."""
        problems: list[str] = []
        item: dict[str, Any] = {"name": self.name.strip()}
        if self.source == "prometheus":
            item["prometheus"] = {"url": self.url.strip(), "query": self.query.strip()}
        elif self.source == "http":
            item["http"] = {"url": self.url.strip(), "json_field": self.json_field.strip()}
        elif self.source == "builtin":
            item["builtin"] = self.builtin
        else:
            problems.append("source: choose built-in, Prometheus or HTTP")
        condition: dict[str, Any] = {}
        for label, op, text in (("pass when", self.op, self.bound), ("and", self.op2, self.bound2)):
            if not text.strip():
                continue  # no bound at all is the API's to refuse, in its words
            if op not in OPERATORS:
                problems.append(f"{label}: choose <, ≤, > or ≥")
            elif not _NUMBER.fullmatch(text.strip()):
                problems.append(f"{label}: a number, e.g. 0.05 or 400")
            elif op in condition:
                problems.append(f"{label}: the same comparison twice")
            else:
                condition[op] = float(text.strip())
        item["pass_when"] = condition
        cadence = (("interval_seconds", self.interval), ("failure_limit", self.failure_limit))
        for key, text in cadence:
            if text.strip():
                # As typed: the API's model says what a wrong one is ("a valid integer", ≥ 1…).
                item[key] = text.strip()
        return item, problems


def from_lists(lists: Mapping[str, Sequence[str]]) -> list[Check]:
    """The posted rows (each column one value a row), at most MAX_CHECKS + 1 of them so one
    too many is still refused by the API's own limit."""
    count = min(MAX_CHECKS + 1, max(len(lists.get(n, ())) for n in _TYPED))

    def column(name: str) -> list[str]:
        values = [str(v) for v in lists.get(name, ())]
        return (values + [""] * count)[:count]

    columns = [column(n) for n in COLUMNS]
    fields = [name.removeprefix("check_") for name in COLUMNS]
    rows = [Check(**dict(zip(fields, row, strict=True))) for row in zip(*columns, strict=True)]
    return rows or [Check()]


def rows(checks: Sequence[Check]) -> list[int]:
    """Form row of each check in the body (blank rows are left out of the body)."""
    return [i for i, c in enumerate(checks) if not c.blank]


def to_json(checks: Sequence[Check], errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The rows' `rollout.checks`; what cannot be read goes to `errors` under `checks.<row>`."""
    items: list[dict[str, Any]] = []
    for row in rows(checks):
        item, problems = checks[row].to_json()
        if problems:
            errors.setdefault(f"checks.{row}", []).extend(problems)
        items.append(item)
    return items


def _bound(value: Any) -> str:
    """A stored bound as typed back: 400.0 as "400", 0.02 as "0.02" (every digit kept)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def from_stored(stored: Sequence[Mapping[str, Any]] | None) -> list[Check]:
    """A campaign's stored checks (`CheckSpec.stored`) as rows, with a blank row after them
    to add one."""
    shown: list[Check] = []
    for spec in stored or []:
        check = Check(name=str(spec.get("name", "")))
        if isinstance(spec.get("prometheus"), Mapping):
            check.source = "prometheus"
            check.url = str(spec["prometheus"].get("url", ""))
            check.query = str(spec["prometheus"].get("query", ""))
        elif isinstance(spec.get("http"), Mapping):
            check.source = "http"
            check.url = str(spec["http"].get("url", ""))
            check.json_field = str(spec["http"].get("json_field", ""))
        else:
            check.source, check.builtin = "builtin", str(spec.get("builtin", ""))
        bounds = [(op, spec.get("pass_when", {}).get(op)) for op in OPERATORS]
        given = [(op, value) for op, value in bounds if value is not None]
        if given:
            check.op, check.bound = given[0][0], _bound(given[0][1])
        if len(given) > 1:
            check.op2, check.bound2 = given[1][0], _bound(given[1][1])
        check.interval = str(spec.get("interval_seconds", ""))
        check.failure_limit = str(spec.get("failure_limit", ""))
        shown.append(check)
    return [*shown, Check()]


def editable(stored: Sequence[Mapping[str, Any]] | None) -> bool:
    """Whether every stored check fits the rows (at most two bounds each)."""
    return all(
        sum(spec.get("pass_when", {}).get(op) is not None for op in OPERATORS) <= 2
        for spec in stored or []
    )


def source_text(spec: Mapping[str, Any]) -> str:
    """Where a stored check reads its value, for a person."""
    if isinstance(spec.get("prometheus"), Mapping):
        return f"Prometheus {spec['prometheus'].get('url')}: {spec['prometheus'].get('query')}"
    if isinstance(spec.get("http"), Mapping):
        return f"HTTP {spec['http'].get('url')}, field {spec['http'].get('json_field')}"
    return f"built-in {spec.get('builtin')}"


def condition_text(spec: Mapping[str, Any]) -> str:
    """A stored condition for a person: "< 0.05 and ≥ 0"."""
    condition = spec.get("pass_when", {})
    return " and ".join(
        f"{SIGNS[op]} {_bound(condition[op])}" for op in OPERATORS if condition.get(op) is not None
    )
