"""The environment guard's verdict on a campaign (SPEC §3), as one pure function.

The API applies it on create, preview, edit and start (`assessment`). The worker does not call
it: at send time it asks `send_check.send_refusal`, which applies the same content and staging
rules to the row as the database has it (the per-device test-audience rule is the sender's,
row by row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.campaigns.models import CampaignKind
from app.guard.lint import lint_content
from app.guard.staging import check_staging
from app.guard.verdict import GuardFinding, GuardVerdict
from app.rollout.planner import WaveSpec
from app.settings import Settings


@dataclass(frozen=True)
class GuardInput:
    kind: CampaignKind
    text_fields: Mapping[str, str]
    waves: Sequence[WaveSpec]
    # Devices in the audience that are not test devices; None when not counted.
    non_test_devices: int | None
    override_reason: str | None


def assess(settings: Settings, subject: GuardInput) -> GuardVerdict:
    """Findings that block (and whether an operator's written override may lift them).

    Outside production the guard still reports what it sees, but blocks nothing: staging
    and development exist to try things. In production:
    - a test campaign whose audience holds a non-test device is refused, never overridable;
    - a live campaign must be staged (≥ 2 waves, small first wave, long enough holds),
      never overridable;
    - a live campaign whose content looks like test content is refused unless overridden.
    """
    production = settings.is_production
    hard: list[GuardFinding] = []
    soft: list[GuardFinding] = []

    if subject.kind is CampaignKind.test and subject.non_test_devices:
        hard.append(
            GuardFinding(
                rule="test_audience",
                code="non_test_devices",
                field="audience",
                message=(
                    f"a test campaign may reach only test devices, but its audience holds "
                    f"{subject.non_test_devices} device(s) not marked as test devices"
                ),
            )
        )
    if subject.kind is CampaignKind.live:
        for problem in check_staging(
            subject.waves,
            max_first_wave_percent=settings.max_first_wave_percent,
            min_hold_seconds=settings.min_hold_seconds,
        ):
            path = (
                "rollout.waves"
                if problem.index is None
                else (f"rollout.waves[{problem.index}].{problem.field}")
            )
            hard.append(
                GuardFinding(
                    rule="staging", code="staging_policy", field=path, message=problem.message
                )
            )
        for finding in lint_content(subject.text_fields):
            soft.append(
                GuardFinding(
                    rule="content",
                    code=finding.code,
                    field=f"content.{finding.field}",
                    message=finding.message,
                    match=finding.match,
                )
            )
    overridden = bool(subject.override_reason) and bool(soft) and not hard
    if not production:
        return GuardVerdict(allowed=True, overridable=False, overridden=False, findings=hard + soft)
    allowed = not hard and (not soft or overridden)
    return GuardVerdict(
        allowed=allowed,
        overridable=bool(soft) and not hard,
        overridden=overridden,
        findings=hard + soft,
    )
