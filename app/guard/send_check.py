"""The guard's last word on a campaign before the worker sends it (SPEC §3, rules 2, 4, 5).

The API guards a campaign when it is created, edited and started; the worker asks this
function again at send time, because a row may have reached the database by another road
(a migration, a script, a restore, a bug in another path) and because an override binds to
the content it was given for (``app.guard.override``), not to the campaign.

Pure: no I/O, no clock. The per-device test-audience check (rule 1) is the sender's, row by
row; provider and host checks (rule 3) are the providers'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import ValidationError

from app.campaigns.models import CampaignKind
from app.guard.override import judge_content, standing_reason
from app.guard.staging import check_staging
from app.rollout.planner import WaveSpec
from app.settings import Settings

# How many lint findings a refusal names; the rest are in the API's guard verdict.
SHOWN_FINDINGS = 3


class GuardedCampaign(Protocol):
    """What the check reads of a campaign row (``app.campaigns.models.Campaign`` is one)."""

    @property
    def kind(self) -> str: ...

    @property
    def content(self) -> Mapping[str, Any]: ...

    @property
    def guard_override_reason(self) -> str | None: ...

    @property
    def guard_override_hash(self) -> str | None: ...


def send_refusal(
    settings: Settings, campaign: GuardedCampaign, waves: Sequence[WaveSpec]
) -> str | None:
    """Why ``campaign`` must not send now, or None when the guard lets it.

    In every environment a row the guard cannot read is refused: an unknown kind, or content
    that is not valid campaign content (fail closed: the guard cannot vouch for what it
    cannot read). In production, for a live campaign:

    - rule 4: ``waves`` must pass ``check_staging`` under the settings' first-wave cap and
      minimum hold (never overridable);
    - rule 2: content the lint flags is refused unless the row carries an override whose
      binding equals the binding of its current content and findings; a missing binding,
      or one made for other content or other findings, is no override.

    A test campaign's content is not linted (test content is its point) and its rollout is
    not policed; its audience is, device by device, by the sender. Outside production the
    rules advise and never refuse. Every reason starts with "environment guard: ".
    """
    try:
        kind = CampaignKind(campaign.kind)
    except ValueError:
        return f"environment guard: unknown campaign kind {campaign.kind!r}"
    try:
        judgement = judge_content(campaign.content)
    except (ValidationError, TypeError, ValueError):
        return "environment guard: the campaign's content is not valid campaign content"
    if not settings.is_production or kind is not CampaignKind.live:
        return None

    reasons: list[str] = []
    try:
        staging = check_staging(
            waves,
            max_first_wave_percent=settings.max_first_wave_percent,
            min_hold_seconds=settings.min_hold_seconds,
        )
    except ValueError as exc:
        reasons.append(f"the staging policy is misconfigured ({exc})")
    else:
        if staging:
            reasons.append("the rollout is not staged: " + " ".join(p.message for p in staging))
    if judgement.findings and (
        standing_reason(campaign.guard_override_reason, campaign.guard_override_hash, judgement)
        is None
    ):
        shown = "; ".join(f.message for f in judgement.findings[:SHOWN_FINDINGS])
        reason = f"content looks like test content: {shown}"
        if campaign.guard_override_reason:
            reason += (
                " (the override on record was given for other content or other findings, "
                "so it does not cover this)"
            )
        reasons.append(reason)
    return "environment guard: " + "; ".join(reasons) if reasons else None
