"""`GET /v1/policy`: the guard's rules as this deployment applies them."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import CampaignsReader, SettingsDep
from app.guard.deployment_policy import EffectivePolicy, effective_policy

router = APIRouter(prefix="/v1/policy", tags=["guard"])


@router.get("", response_model=EffectivePolicy)
async def read_policy(settings: SettingsDep, _: CampaignsReader) -> EffectivePolicy:
    """The environment guard's effective policy: the environment and provider, whether
    campaigns reach test devices only, the production staging rules (with the loosest values
    production accepts) and whether the content lint blocks or advises."""
    return effective_policy(settings)
