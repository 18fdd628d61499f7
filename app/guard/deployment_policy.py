"""The guard's rules as this deployment applies them: what `GET /v1/policy` answers, what the
form shows, and what the audit log compares from one start of the deployment to the next.

Pure: built from the settings alone.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel

from app.settings import (
    PRODUCTION_FIRST_WAVE_CEILING,
    PRODUCTION_HOLD_FLOOR_SECONDS,
    Settings,
)


class StagingPolicy(BaseModel):
    enforced: bool
    min_waves: int
    max_first_wave_percent: Decimal
    min_hold_seconds: int
    # The loosest values a production deployment may set.
    first_wave_ceiling_percent: Decimal
    hold_floor_seconds: int


class EffectivePolicy(BaseModel):
    environment: str
    provider: str
    # True: every campaign, of either kind, reaches test devices only (outside production
    # with a real provider).
    test_devices_only: bool
    # "blocks": test-like content in a live campaign is refused unless overridden;
    # "advisory": reported, never refused.
    content_lint: str
    staging: StagingPolicy

    def summary(self) -> str:
        """One line for a person: what this deployment refuses."""
        parts = [f"{self.environment}, {self.provider} provider"]
        if self.test_devices_only:
            parts.append("test devices only")
        if self.staging.enforced:
            parts.append(
                f"live campaigns staged: ≥ {self.staging.min_waves} waves, first wave ≤ "
                f"{self.staging.max_first_wave_percent:f}%, holds ≥ "
                f"{self.staging.min_hold_seconds} s"
            )
        parts.append(f"content lint {self.content_lint}")
        return "; ".join(parts)


def effective_policy(settings: Settings) -> EffectivePolicy:
    production = settings.is_production
    return EffectivePolicy(
        environment=settings.env.value,
        provider=settings.provider.value,
        test_devices_only=settings.test_devices_only,
        content_lint="blocks" if production else "advisory",
        staging=StagingPolicy(
            enforced=production,
            min_waves=2,
            max_first_wave_percent=settings.max_first_wave_percent,
            min_hold_seconds=settings.min_hold_seconds,
            first_wave_ceiling_percent=PRODUCTION_FIRST_WAVE_CEILING,
            hold_floor_seconds=PRODUCTION_HOLD_FLOOR_SECONDS,
        ),
    )
