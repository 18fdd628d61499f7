"""The guard as the API applies it: the verdict on a campaign being created, previewed,
edited or started, and the refusal (audited even though the request is rolled back).

The pure rules are in `policy` (what blocks, what an override may lift), `lint` (test-like
content), `staging` (rule 4) and `override` (what an override is bound to); the worker's own
check at send time is `send_check`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audiences import service as audiences
from app.audit import service as audit
from app.auth.models import Scope
from app.auth.principal import Principal
from app.campaigns.models import CampaignKind
from app.campaigns.schemas import Content
from app.db.session import after_rollback
from app.errors import FieldError, Problem
from app.guard.policy import GuardInput, assess
from app.guard.verdict import GuardVerdict
from app.rollout.planner import WaveSpec
from app.settings import Settings


async def verdict(
    session: AsyncSession,
    settings: Settings,
    *,
    kind: CampaignKind,
    content: Content,
    waves: Sequence[WaveSpec],
    rules: dict[str, Any],
    override_reason: str | None,
    starting: bool = False,
) -> GuardVerdict:
    counted = kind is CampaignKind.test or settings.test_devices_only
    non_test = await audiences.count_non_test(session, rules) if counted else None
    return assess(
        settings,
        GuardInput(
            kind=kind,
            text_fields=content.text_fields(),
            waves=waves,
            non_test_devices=non_test,
            override_reason=override_reason,
            starting=starting,
        ),
    )


def refuse_unless_allowed(
    session: AsyncSession,
    principal: Principal,
    verdict: GuardVerdict,
    *,
    subject_id: uuid.UUID | None,
    attempted: str,
) -> None:
    """Raise the guard's refusal. The refusal is audited in a transaction of its own: the
    request's own changes are rolled back, the record that it was refused is not."""
    if verdict.allowed:
        return
    engine = session.bind

    async def audit_refusal() -> None:
        async with AsyncSession(engine) as own:
            audit.record(
                own,
                principal,
                "guard.refused",
                subject_type="campaign",
                subject_id=subject_id,
                reason=f"{attempted} refused by the environment guard",
                after={"findings": [f.model_dump(mode="json") for f in verdict.findings]},
            )
            await own.commit()

    after_rollback(session, audit_refusal)
    hint = (
        " An operator with the campaigns:operate scope may override the content findings "
        'with {"override": {"reason": "..."}}.'
        if verdict.overridable
        else ""
    )
    raise Problem(
        422,
        "Refused by the environment guard",
        "; ".join(f.message for f in verdict.findings) + "." + hint,
        errors=[FieldError(f.field, f.message) for f in verdict.findings],
        type_="https://wavecast.dev/problems/guard-refused",
        extra={"guard": verdict.model_dump(mode="json")},
    )


def require_override_right(principal: Principal, override: object | None) -> None:
    if override is not None and not principal.has(Scope.campaigns_operate):
        raise Problem(
            403, "Forbidden", "overriding the environment guard needs the 'campaigns:operate' scope"
        )
