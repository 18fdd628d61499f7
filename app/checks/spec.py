"""What a wave check is: its source, its condition and its cadence.

The same shape serves a campaign's `rollout.checks` and the deployment's defaults
(WAVECAST_DEFAULT_CHECKS). Conditions are structured bounds (lt, lte, gt, gte), never
expressions to evaluate, and URLs are refused unless they are plain http(s) with a host
and no credentials (a secret in a URL would be stored, shown and audited with the
campaign).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from app import urls

Builtin = Literal["failure_rate", "opens_per_second"]
MAX_CHECKS = 20


MAX_URL_LENGTH = 2048


def _plain_url(url: str) -> str:
    problems = urls.url_problems(url, max_length=MAX_URL_LENGTH)
    if problems:
        raise ValueError(f"the URL {'; '.join(problems)}")
    return url


Url = Annotated[str, StringConstraints(min_length=1), AfterValidator(_plain_url)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
# A dotted path into a JSON answer: object keys, or list indexes written as digits.
JsonPath = Annotated[
    str, StringConstraints(max_length=256, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrometheusSource(_Strict):
    url: Url
    query: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class HttpSource(_Strict):
    url: Url
    json_field: JsonPath


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("a bound must be a finite number")
    return value


Bound = Annotated[float | None, AfterValidator(_finite)]
OPERATORS = ("lt", "lte", "gt", "gte")


class Condition(_Strict):
    """Bounds a value must meet to pass; every bound given must hold."""

    lt: Bound = None
    lte: Bound = None
    gt: Bound = None
    gte: Bound = None

    @model_validator(mode="after")
    def _some_bound(self) -> Self:
        if all(getattr(self, op) is None for op in OPERATORS):
            raise ValueError("pass_when needs at least one of lt, lte, gt, gte")
        return self

    def holds(self, value: float) -> bool:
        return (
            (self.lt is None or value < self.lt)
            and (self.lte is None or value <= self.lte)
            and (self.gt is None or value > self.gt)
            and (self.gte is None or value >= self.gte)
        )

    def text(self) -> str:
        """The condition as a reader writes it: "< 0.02 and >= 0"."""
        signs = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
        bounds = [(op, getattr(self, op)) for op in OPERATORS]
        return " and ".join(f"{signs[op]} {b:g}" for op, b in bounds if b is not None)


class CheckSpec(_Strict):
    name: Name
    prometheus: PrometheusSource | None = None
    http: HttpSource | None = None
    builtin: Builtin | None = None
    pass_when: Condition
    interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    # Failures in a row that pause the campaign.
    failure_limit: Annotated[int, Field(ge=1, le=100)] = 1

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [s for s in ("prometheus", "http", "builtin") if getattr(self, s) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one source: prometheus, http or builtin"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def stored(self) -> dict[str, object]:
        """The JSON the campaign stores and shows: what was given, defaults filled in."""
        return self.model_dump(mode="json", exclude_none=True)


def unique_names(checks: list[CheckSpec]) -> list[CheckSpec]:
    seen: set[str] = set()
    for check in checks:
        if check.name in seen:
            raise ValueError(f"check names must be unique; {check.name!r} appears twice")
        seen.add(check.name)
    return checks


CheckList = Annotated[list[CheckSpec], Field(max_length=MAX_CHECKS), AfterValidator(unique_names)]
check_list = TypeAdapter(CheckList)


def load(stored: list[dict[str, object]] | None) -> list[CheckSpec]:
    """A campaign's stored checks (None: stored before checks existed, so none)."""
    return check_list.validate_python(stored or [])
