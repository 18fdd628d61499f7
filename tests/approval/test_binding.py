"""What an approval is bound to (pure): every field that changes what is sent, to whom or how
fast changes the binding; nothing else does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.approval.binding import binding, needed_because

T = datetime(2026, 12, 24, 9, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "kind": "live",
    "content": {"title": "Your statement is ready", "body": "Log in to see it."},
    "audience_rules": {"everyone": True},
    "waves": [(Decimal("1"), 600), (Decimal("100"), 0)],
    "start_at": None,
    "local_time": None,
    "checks": [],
    "throttle_per_second": 100,
    "failure_threshold_percent": Decimal("5"),
    "quiet_hours": None,
    "expires_at": None,
    "priority": "normal",
    "override_reason": None,
    "override_hash": None,
}
CHANGES: dict[str, Any] = {
    "kind": "test",
    "content": {"title": "Your statement is ready", "body": "Log in to see it now."},
    "audience_rules": {"field": "platform", "op": "eq", "value": "ios"},
    "waves": [(Decimal("5"), 600), (Decimal("100"), 0)],
    "start_at": T,
    "local_time": "10:00",
    "checks": [{"name": "tap surge", "builtin": "opens_per_second", "pass_when": {"lt": 400}}],
    "throttle_per_second": 100_000,
    "failure_threshold_percent": Decimal("20"),
    "quiet_hours": "off",
    "expires_at": T + timedelta(hours=4),
    "priority": "critical",
    "override_reason": "the quiz is called Test",
}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_each_field_is_bound(field: str) -> None:
    assert binding(**{**BASE, field: CHANGES[field]}) != binding(**BASE)


def test_the_same_campaign_read_back_binds_the_same() -> None:
    read_back = {
        **BASE,
        "waves": [(Decimal("1.0000"), 600), (Decimal("100.0000"), 0)],
        "failure_threshold_percent": Decimal("5.0000"),
        "audience_rules": {"everyone": True},
    }
    assert binding(**read_back) == binding(**BASE)
    later_hour = {**BASE, "start_at": T}
    same_instant = {**BASE, "start_at": T.astimezone(ZoneInfo("Europe/Warsaw"))}
    assert binding(**later_hour) == binding(**same_instant)


def test_when_approval_is_needed() -> None:
    def needed(**kw: Any) -> list[str]:
        args = {"live": True, "audience_size": 10, "threshold": None, "production": False}
        return needed_because(**{**args, "has_override": False, **kw})

    assert needed() == []
    assert needed(threshold=0, audience_size=0) != []  # 0: every live campaign
    assert needed(threshold=10) == []
    assert needed(threshold=9) != []
    assert needed(threshold=0, live=False) == []  # test devices only
    assert needed(production=True, has_override=True) != []
    assert needed(production=False, has_override=True) == []
