"""The campaign edit form: throttle, opens budget and wave checks, as typed, and the
`CampaignPatch` the API's PATCH takes for them (pure).

Only what changed is sent, so saving the form as it was shown edits nothing (no audit
event, no voided approval). Checks live in the rollout, which the API replaces whole: the
patch carries the campaign's stored waves, start and local time unchanged beside the new
checks. A campaign that left draft may change only its throttle; its checks are shown, not
posted, and a form that still posts changed checks is refused by the service (409), said
on the form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from pydantic import ValidationError

from app.campaigns.models import Campaign, CampaignWave
from app.campaigns.schemas import CampaignPatch
from app.campaigns.state import CampaignStatus
from app.ui import check_rows
from app.ui.check_rows import Check
from app.ui.forms import GENERAL, place, pydantic_errors, throttle_json

# Posted by the form when its check rows are there to edit: without it, no rows means
# "unchanged", not "remove every check".
CHECKS_SHOWN = "checks_shown"


@dataclass
class EditForm:
    throttle: str = ""
    max_opens: str = ""
    checks: list[Check] = field(default_factory=lambda: [Check()])
    checks_shown: bool = False

    @classmethod
    def of(cls, campaign: Campaign) -> EditForm:
        """The form as the campaign stands."""
        return cls(
            throttle=str(campaign.throttle_per_second),
            max_opens=(
                "" if campaign.max_opens_per_second is None else str(campaign.max_opens_per_second)
            ),
            checks=check_rows.from_stored(campaign.checks),
            checks_shown=checks_editable(campaign),
        )

    @classmethod
    def from_form(cls, form: Mapping[str, str], lists: Mapping[str, Sequence[str]]) -> EditForm:
        shown = form.get(CHECKS_SHOWN) == "yes"
        return cls(
            throttle=str(form.get("throttle", "")),
            max_opens=str(form.get("max_opens_per_second", "")),
            checks=check_rows.from_lists(lists) if shown else [],
            checks_shown=shown,
        )

    def check_rows(self) -> list[int]:
        return check_rows.rows(self.checks)

    def to_patch(
        self, campaign: Campaign, waves: Sequence[CampaignWave]
    ) -> tuple[CampaignPatch | None, dict[str, list[str]]]:
        """The edit as the API's body (validated by its model), or the errors by input."""
        errors: dict[str, list[str]] = {}
        raw: dict[str, Any] = {}
        if not self.throttle.strip():
            # On a new campaign empty means the default rate; here it would change the rate
            # the campaign has without anyone typing the new one.
            errors["throttle"] = ["a whole number of sends per second"]
        throttle = throttle_json(self.throttle, self.max_opens, errors, keep_budget=True)
        stored = {
            "per_second": campaign.throttle_per_second,
            "max_opens_per_second": campaign.max_opens_per_second,
        }
        if throttle != stored:
            raw["throttle"] = throttle
        if self.checks_shown:
            raw["rollout"] = _rollout(campaign, waves, check_rows.to_json(self.checks, errors))
        if errors:
            return None, errors
        try:
            patch = CampaignPatch.model_validate(raw)
        except ValidationError as exc:
            return None, place(pydantic_errors(exc), (), self.check_rows())
        if patch.rollout is not None and [c.stored() for c in patch.rollout.checks] == (
            campaign.checks or []
        ):
            del raw["rollout"]
            patch = CampaignPatch.model_validate(raw)
        return patch, {}

    def inputs(self) -> set[str]:
        """The names errors may be placed under on this form; others go to its summary."""
        rows = {f"checks.{row}" for row in range(len(self.checks))}
        return {"throttle", "max_opens_per_second", "checks", *rows}

    def fold(self, placed: Mapping[str, list[str]]) -> dict[str, list[str]]:
        """Errors placed by `forms.place`, those with no input here moved to the summary."""
        inputs = self.inputs()
        folded: dict[str, list[str]] = {}
        for target, messages in placed.items():
            folded.setdefault(target if target in inputs else GENERAL, []).extend(messages)
        return folded


def checks_editable(campaign: Campaign) -> bool:
    """A draft's checks can change, when the rows can show each of them whole."""
    return campaign.status == CampaignStatus.draft and check_rows.editable(campaign.checks)


def _rollout(
    campaign: Campaign, waves: Sequence[CampaignWave], checks: list[dict[str, Any]]
) -> dict[str, Any]:
    """The stored rollout with new checks (the API replaces the rollout whole)."""
    start_at = campaign.start_at
    if start_at is not None and start_at.tzinfo is None:
        start_at = start_at.replace(tzinfo=UTC)
    return {
        "start_at": start_at.isoformat() if start_at is not None else None,
        "waves": [{"percent": str(w.percent), "hold_seconds": w.hold_seconds} for w in waves],
        "local_time": campaign.local_time,
        "checks": checks,
    }
