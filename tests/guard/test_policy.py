"""The guard's verdict as the API applies it (app.guard.policy.assess): every combination of
environment, kind, audience, staging, content and override, checked against the rules as the
SPEC states them."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from app.campaigns.models import CampaignKind
from app.guard.policy import GuardInput, assess
from app.rollout.planner import WaveSpec
from app.settings import Environment, ProviderMode, Settings

STAGED = [WaveSpec(Decimal(1), 900), WaveSpec(Decimal(100), 0)]
UNSTAGED = [WaveSpec(Decimal(100), 0)]
CLEAN = {"title": "Your statement is ready", "body": "Log in to see it."}
TESTY = {"title": "ęśąćż", "body": "test wiadomości push"}


def _settings(production: bool, real: bool = False) -> Settings:
    provider = ProviderMode.real if real else ProviderMode.sandbox
    if not production:
        return Settings.model_construct(provider=provider)
    return Settings.model_construct(env=Environment.production, provider=ProviderMode.real)


@pytest.mark.parametrize(
    ("production", "real", "starting", "kind", "non_test", "staged", "testy", "override"),
    list(
        itertools.product(
            [False, True],
            [False, True],
            [False, True],
            list(CampaignKind),
            [0, 3],
            [True, False],
            [False, True],
            [None, "checked with the product owner"],
        )
    ),
)
def test_every_combination_follows_the_rules(
    production: bool,
    real: bool,
    starting: bool,
    kind: CampaignKind,
    non_test: int,
    staged: bool,
    testy: bool,
    override: str | None,
) -> None:
    settings = _settings(production, real)
    test_devices_only = real and not production
    verdict = assess(
        settings,
        GuardInput(
            kind=kind,
            text_fields=TESTY if testy else CLEAN,
            waves=STAGED if staged else UNSTAGED,
            non_test_devices=non_test,
            override_reason=override,
            starting=starting,
        ),
    )
    rules = {f.rule for f in verdict.findings}
    # What the guard sees, in every environment: one finding about the audience, the
    # stricter rule when both apply.
    assert ("test_devices_only" in rules) == (test_devices_only and non_test > 0)
    assert ("test_audience" in rules) == (
        kind is CampaignKind.test and non_test > 0 and not test_devices_only
    )
    assert ("staging" in rules) == (kind is CampaignKind.live and not staged)
    assert ("content" in rules) == (kind is CampaignKind.live and testy)
    hard = rules & {"test_audience", "staging"}
    soft = "content" in rules
    if not production:
        # Advisory, except that a real provider's campaign reaching a non-test device never
        # starts (and is never overridable).
        blocked = starting and "test_devices_only" in rules
        assert verdict.allowed == (not blocked)
        assert not verdict.overridable and not verdict.overridden
        return
    assert verdict.overridable == (soft and not hard)
    assert verdict.overridden == (soft and not hard and override is not None)
    assert verdict.allowed == (not hard and (not soft or override is not None))


def test_an_override_never_lifts_a_hard_finding() -> None:
    verdict = assess(
        _settings(True),
        GuardInput(
            kind=CampaignKind.live,
            text_fields=TESTY,
            waves=UNSTAGED,
            non_test_devices=None,
            override_reason="ship it",
        ),
    )
    assert not verdict.allowed and not verdict.overridden
    assert {f.field for f in verdict.findings if f.rule == "staging"}
