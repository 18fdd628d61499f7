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
    # True when the campaign is about to start (its audience is about to be reached); False
    # for a create, an edit or a preview, where the test-devices-only rule only advises, so
    # QA devices may still be marked before the start.
    starting: bool = False


def assess(settings: Settings, subject: GuardInput) -> GuardVerdict:
    """Findings that block (and whether an operator's written override may lift them).

    Outside production the guard reports what it sees and blocks one thing: with a real
    provider (``Settings.test_devices_only``) a campaign of either kind whose audience holds a
    non-test device does not start, never overridable (the worker also blocks such rows one by
    one). Staging and development exist to try things, not to reach customers. In production:
    - a test campaign whose audience holds a non-test device is refused, never overridable;
    - a live campaign must be staged (≥ 2 waves, small first wave, long enough holds),
      never overridable;
    - a live campaign whose content looks like test content is refused unless overridden.
    """
    production = settings.is_production
    hard: list[GuardFinding] = []
    soft: list[GuardFinding] = []

    if settings.test_devices_only and subject.non_test_devices:
        hard.append(
            GuardFinding(
                rule="test_devices_only",
                code="non_test_devices",
                field="audience",
                message=(
                    f"outside production (WAVECAST_ENV={settings.env.value}) a real provider "
                    f"reaches test devices only, but this audience holds "
                    f"{subject.non_test_devices} device(s) not marked as test devices: mark "
                    "them as test devices (POST /v1/devices/test-marks) or narrow the audience"
                ),
            )
        )
    elif subject.kind is CampaignKind.test and subject.non_test_devices:
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
        blocks = subject.starting and any(f.rule == "test_devices_only" for f in hard)
        return GuardVerdict(
            allowed=not blocks, overridable=False, overridden=False, findings=hard + soft
        )
    allowed = not hard and (not soft or overridden)
    return GuardVerdict(
        allowed=allowed,
        overridable=bool(soft) and not hard,
        overridden=overridden,
        findings=hard + soft,
    )
