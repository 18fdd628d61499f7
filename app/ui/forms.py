"""The new-campaign form: what was typed, the API body it stands for, and where errors go.

Pure functions, no I/O. The form keeps every value as typed (strings), so a refused form is
shown again exactly as it was; `to_body` turns it into the JSON body the API accepts, and
`place` puts each error the API would report (by its `field` path) beside the input that
has to change.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from app.campaigns.schemas import CampaignCreate
from app.campaigns.service import DEFAULT_THROTTLE
from app.errors import describe
from app.timing.schedule import parse_local_time
from app.ui import check_rows
from app.ui.check_rows import Check

LIST_OPS = frozenset({"in", "contains_any", "contains_all", "contains_none"})
DAY_OPS = frozenset({"within_days", "not_within_days"})
RULE_FIELDS = (
    "platform",
    "locale",
    "timezone",
    "app_version",
    "tags",
    "last_seen",
    "user_id",
    "is_test_device",
    "device_id",
)
RULE_OPS = (
    "eq",
    "ne",
    "in",
    "starts_with",
    "lt",
    "lte",
    "gt",
    "gte",
    "contains",
    "contains_any",
    "contains_all",
    "contains_none",
    "exists",
    "within_days",
    "not_within_days",
)
PRESETS: dict[str, list[tuple[str, str]]] = {
    "1-5-25-100": [("1", "900"), ("5", "900"), ("25", "1800"), ("100", "")],
    "5-25-100": [("5", "900"), ("25", "1800"), ("100", "")],
    "10-50-100": [("10", "600"), ("50", "600"), ("100", "")],
    "100": [("100", "")],
}
DEFAULT_PRESET = "1-5-25-100"
MAX_RULES = 50
MAX_WAVES = 20
GENERAL = ""
# Quiet hours: the deployment's (the API's field absent), the campaign's own window, or none
# (null: a critical campaign only; the service refuses it for any other).
QUIET_MODES = ("default", "custom", "off")
PRIORITIES = ("normal", "critical")
_CLOCK_HINT = 'a time of day, "HH:MM" (e.g. "09:30")'


@dataclass
class Rule:
    field: str = ""
    op: str = ""
    value: str = ""

    @property
    def blank(self) -> bool:
        return not (self.field or self.op or self.value.strip())


@dataclass
class Wave:
    percent: str = ""
    hold: str = ""

    @property
    def blank(self) -> bool:
        return not (self.percent.strip() or self.hold.strip())


_SUBMISSION = re.compile(r"[0-9a-f]{32}")


@dataclass
class CampaignForm:
    name: str = ""
    kind: str = "live"
    title: str = ""
    body: str = ""
    deep_link: str = ""
    data: str = ""
    audience_mode: str = "rules"
    segment_id: str = ""
    rule_match: str = "all"
    rules: list[Rule] = field(default_factory=lambda: [Rule()])
    waves: list[Wave] = field(
        default_factory=lambda: [Wave(p, h) for p, h in PRESETS[DEFAULT_PRESET]]
    )
    throttle: str = ""
    # The opens budget (`throttle.max_opens_per_second`); empty: none.
    max_opens: str = ""
    checks: list[Check] = field(default_factory=lambda: [Check()])
    local_time: str = ""
    quiet_mode: str = "default"
    quiet_start: str = ""
    quiet_end: str = ""
    # A `datetime-local` value ("2026-12-24T18:00"), read as UTC.
    expires_at: str = ""
    priority: str = "normal"
    override_reason: str = ""
    # Drawn when the form is first shown and sent back with every submit of it: a second
    # submit of the same form (a double click, a reload of the answer) finds the campaign
    # the first one created instead of creating another (`campaign_pages.create_campaign`).
    submission: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def from_form(cls, form: Mapping[str, str], lists: Mapping[str, Sequence[str]]) -> CampaignForm:
        """`form` holds single values, `lists` the repeated fields (rule and wave rows)."""

        def one(name: str, default: str = "") -> str:
            return str(form.get(name, default))

        def column(name: str, length: int) -> list[str]:
            values = [str(v) for v in lists.get(name, ())]
            return (values + [""] * length)[:length]

        n_rules = min(MAX_RULES, max(len(lists.get(n, ())) for n in ("rule_field", "rule_value")))
        fields, ops, values = (column(n, n_rules) for n in ("rule_field", "rule_op", "rule_value"))
        n_waves = min(MAX_WAVES, max(len(lists.get(n, ())) for n in ("wave_percent", "wave_hold")))
        percents, holds = (column(n, n_waves) for n in ("wave_percent", "wave_hold"))
        return cls(
            name=one("name"),
            kind=one("kind", "live"),
            title=one("title"),
            body=one("body"),
            deep_link=one("deep_link"),
            data=one("data"),
            audience_mode=one("audience_mode", "rules"),
            segment_id=one("segment_id"),
            rule_match=one("rule_match", "all"),
            rules=[Rule(f, o, v) for f, o, v in zip(fields, ops, values, strict=True)] or [Rule()],
            waves=[Wave(p, h) for p, h in zip(percents, holds, strict=True)] or [Wave()],
            throttle=one("throttle"),
            max_opens=one("max_opens_per_second"),
            checks=check_rows.from_lists(lists),
            local_time=one("local_time"),
            quiet_mode=one("quiet_mode", "default"),
            quiet_start=one("quiet_start"),
            quiet_end=one("quiet_end"),
            expires_at=one("expires_at"),
            priority=one("priority", "normal"),
            override_reason=one("override_reason"),
            # Anything but what the form draws is dropped: no key, no de-duplication.
            submission=one("submission") if _SUBMISSION.fullmatch(one("submission")) else "",
        )

    def wave_rows(self) -> list[int]:
        """Form row of each wave in the body (blank rows are left out of the body)."""
        return [i for i, w in enumerate(self.waves) if not w.blank]

    def check_rows(self) -> list[int]:
        """Form row of each check in the body."""
        return check_rows.rows(self.checks)

    def place(self, errors: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
        """`place` for this form's rows."""
        return place(errors, self.wave_rows(), self.check_rows())

    def to_body(self) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The API body, and the problems found before the API could even read it."""
        errors: dict[str, list[str]] = {}
        content: dict[str, Any] = {"title": self.title, "body": self.body}
        if self.deep_link.strip():
            content["deep_link"] = self.deep_link.strip()
        data, data_errors = parse_data(self.data)
        if data_errors:
            errors["data"] = data_errors
        if data:
            content["data"] = data
        body: dict[str, Any] = {
            "name": self.name.strip(),
            "kind": self.kind,
            "content": content,
            "audience": self._audience(errors),
            "rollout": {"waves": self._waves(errors)},
        }
        checks = check_rows.to_json(self.checks, errors)
        if checks:
            body["rollout"]["checks"] = checks
        throttle = throttle_json(self.throttle, self.max_opens, errors)
        if throttle is not None:
            body["throttle"] = throttle
        self._timing(body, errors)
        if self.override_reason.strip():
            body["override"] = {"reason": self.override_reason.strip()}
        return body, errors

    def _timing(self, body: dict[str, Any], errors: dict[str, list[str]]) -> None:
        """Local time, quiet hours, deadline and priority, as the API's fields."""
        if self.local_time.strip():
            if _clock(self.local_time) is None:
                errors.setdefault("local_time", []).append(_CLOCK_HINT)
            body["rollout"]["local_time"] = self.local_time.strip()
        if self.quiet_mode == "custom":
            start, end = _clock(self.quiet_start), _clock(self.quiet_end)
            if start is None or end is None:
                errors.setdefault("quiet_hours", []).append(
                    f"give the window's start and end, each {_CLOCK_HINT}"
                )
            body["quiet_hours"] = {"start": start, "end": end}
        elif self.quiet_mode == "off":
            body["quiet_hours"] = None
        elif self.quiet_mode != "default":
            errors.setdefault("quiet_hours", []).append(
                "choose the deployment's, a window of the campaign's own, or off"
            )
        if self.expires_at.strip():
            expires = _utc_datetime(self.expires_at)
            if expires is None:
                errors.setdefault("expires_at", []).append(
                    "a date and time in UTC, YYYY-MM-DD HH:MM"
                )
            else:
                body["expires_at"] = expires.isoformat()
        body["priority"] = self.priority

    def _audience(self, errors: dict[str, list[str]]) -> dict[str, Any]:
        if self.audience_mode == "everyone":
            return {"rules": {"everyone": True}}
        if self.audience_mode == "segment":
            if not self.segment_id:
                errors.setdefault("audience", []).append("choose a saved segment")
            return {"segment_id": self.segment_id or None}
        conditions = [rule_json(r) for r in self.rules if not r.blank]
        if not conditions:
            errors.setdefault("audience", []).append(
                "add at least one rule, or choose everyone on purpose"
            )
            return {"rules": None}
        match = self.rule_match if self.rule_match in ("all", "any") else "all"
        return {"rules": {match: conditions}}

    def _waves(self, errors: dict[str, list[str]]) -> list[dict[str, Any]]:
        waves: list[dict[str, Any]] = []
        for row in self.wave_rows():
            wave = self.waves[row]
            item: dict[str, Any] = {"percent": wave.percent.strip()}
            if wave.hold.strip():
                hold = _integer(wave.hold)
                if hold is None:
                    errors.setdefault(f"waves.{row}", []).append("hold: whole seconds")
                else:
                    item["hold_seconds"] = hold
            waves.append(item)
        if not waves:
            errors.setdefault("waves", []).append("add at least one wave")
        return waves

    def validate(self) -> tuple[CampaignCreate | None, dict[str, list[str]]]:
        """The typed body, or the errors to show beside the fields (as the API would name them)."""
        raw, errors = self.to_body()
        if errors:
            return None, errors
        try:
            return CampaignCreate.model_validate(raw), {}
        except ValidationError as exc:
            return None, self.place(pydantic_errors(exc))


def pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """A model's errors as (API field path, message) pairs, as the API reports them."""
    return [(".".join(str(p) for p in err["loc"]) or "body", describe(err)) for err in exc.errors()]


def throttle_json(
    throttle: str, max_opens: str, errors: dict[str, list[str]], *, keep_budget: bool = False
) -> dict[str, Any] | None:
    """The API's `throttle` from its two inputs, or None when neither was typed. A budget
    without a rate keeps the default rate. `keep_budget` (an edit): an empty budget is sent
    as null, which removes the one stored."""
    if not (throttle.strip() or max_opens.strip() or keep_budget):
        return None
    per_second = _integer(throttle) if throttle.strip() else DEFAULT_THROTTLE
    if per_second is None:
        errors.setdefault("throttle", []).append("a whole number of sends per second")
    body: dict[str, Any] = {"per_second": per_second}
    if max_opens.strip():
        budget = _integer(max_opens)
        if budget is None:
            errors.setdefault("max_opens_per_second", []).append(
                "a whole number of opens per second, or empty for no budget"
            )
        body["max_opens_per_second"] = budget
    elif keep_budget:
        body["max_opens_per_second"] = None
    return body


def _clock(text: str) -> str | None:
    """ "HH:MM" as typed, or None when it is not one."""
    try:
        return f"{parse_local_time(text):%H:%M}"
    except ValueError:
        return None


def _utc_datetime(text: str) -> datetime | None:
    """A `datetime-local` value read as UTC (one with an offset keeps it), or None."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _integer(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"[0-9]{1,9}", text) else None


def parse_data(text: str) -> tuple[dict[str, str], list[str]]:
    """`key=value` lines (blank lines ignored) into the content's data map."""
    data: dict[str, str] = {}
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            errors.append(f"line {number}: write key=value")
            continue
        data[key.strip()] = value.strip()
    return data, errors


def _scalar(text: str) -> Any:
    """An attribute value: a JSON number or boolean when it reads as one, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, bool) or (isinstance(value, int | float) and math.isfinite(value)):
        return value
    return text


def rule_json(rule: Rule) -> dict[str, Any]:
    """One rule row as a rule-language condition; the rule parser judges what it means."""
    text = rule.value.strip()
    value: Any = text
    if rule.op in LIST_OPS:
        items = [item.strip() for item in text.split(",") if item.strip()]
        value = [_scalar(i) for i in items] if rule.field.startswith("attributes.") else items
    elif rule.op in DAY_OPS:
        value = int(text) if re.fullmatch(r"[0-9]{1,6}", text) else text
    elif rule.op == "exists" or rule.field == "is_test_device":
        value = {"true": True, "false": False}.get(text.lower(), text)
    elif rule.field.startswith("attributes."):
        value = _scalar(text)
    return {"field": rule.field, "op": rule.op, "value": value}


_WAVE_PATH = re.compile(r"^rollout\.waves(?:\[(\d+)\]|\.(\d+))")
_CHECK_PATH = re.compile(r"^rollout\.checks(?:\[(\d+)\]|\.(\d+))?\.?(.*)$")


def form_field(path: str, wave_rows: Sequence[int] = (), check_rows: Sequence[int] = ()) -> str:
    """The form input an API error path belongs to ("" for the summary at the top)."""
    if path.startswith("body."):
        path = path[len("body.") :]
    head, _, rest = path.partition(".")
    if head == "content":
        sub = rest.split(".", 1)[0].split("[", 1)[0]
        if sub in ("title", "body", "deep_link", "data"):
            return sub
        return "content"
    wave = _WAVE_PATH.match(path)
    if wave:
        index = int(wave.group(1) or wave.group(2))
        return f"waves.{wave_rows[index]}" if index < len(wave_rows) else "waves"
    if path.startswith("rollout.local_time"):
        return "local_time"
    check = _CHECK_PATH.match(path)
    if check:
        if check.group(1) is None and check.group(2) is None:
            return "checks"
        index = int(check.group(1) or check.group(2))
        return f"checks.{check_rows[index]}" if index < len(check_rows) else "checks"
    if path.startswith("throttle.max_opens_per_second"):
        return "max_opens_per_second"
    if head.startswith("rollout"):
        return "waves"
    if head in ("quiet_hours", "expires_at", "priority"):
        return head
    if head.startswith(("audience", "rules", "segment_id")):
        return "audience"
    if head in ("name", "kind", "throttle"):
        return head
    if head == "override":
        return "override_reason"
    return GENERAL


# The inputs that carry a list of the guard's findings beside them (`data-guard-for`), besides
# each wave row's; a finding placed anywhere else is listed in the verdict itself.
GUARD_BESIDE = frozenset({"title", "body", "deep_link", "data", "audience"})


def split_guard(
    placed: Mapping[str, list[str]], rows: int
) -> tuple[dict[str, list[str]], list[str]]:
    """The guard's placed findings (`place`) split into those shown beside an input of a
    form with `rows` wave rows, and the rest, for the verdict: each finding has one home."""
    wave_inputs = {f"waves.{row}" for row in range(rows)}
    beside = {k: v for k, v in placed.items() if k in GUARD_BESIDE or k in wave_inputs}
    rest = [message for k, v in placed.items() if k not in beside for message in v]
    return beside, rest


def place(
    errors: Iterable[tuple[str, str]],
    wave_rows: Sequence[int] = (),
    check_rows: Sequence[int] = (),
) -> dict[str, list[str]]:
    """Group (API field path, message) pairs by form input; the message keeps the path's tail
    when the input alone would not say which part is meant."""
    placed: dict[str, list[str]] = {}
    for path, message in errors:
        target = form_field(path, wave_rows, check_rows)
        text = message
        if target in (GENERAL, "content", "audience", "waves") and path not in ("", "body"):
            text = f"{path}: {message}"
        elif target.startswith("checks.") and (tail := _check_tail(path)):
            text = f"{tail}: {message}"
        placed.setdefault(target, []).append(text)
    return placed


def _check_tail(path: str) -> str:
    """The part of a check an error path names ("pass_when", "prometheus.url"), for the
    message beside the check's row."""
    if path.startswith("body."):
        path = path[len("body.") :]
    found = _CHECK_PATH.match(path)
    return found.group(3) if found else ""
