"""What the campaign pages say about a campaign, worked out from its stored rows (pure).

The words a person reads before pressing Start: the text each device sees, the audience's
rules, how far the campaign has reached into its whole audience, and what each wave is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.campaigns.models import CampaignPriority, WaveStatus
from app.campaigns.schemas import CampaignOut, Content
from app.campaigns.state import CampaignStatus
from app.delivery.payloads import Text, pick_text

PLATFORMS = ("ios", "android")
# The options shown beside the text: everything a platform override may set besides it.
_OPTIONS = {
    "ios": (
        "subtitle",
        "sound",
        "badge",
        "category",
        "thread_id",
        "mutable_content",
        "priority",
        "interruption_level",
    ),
    "android": ("channel_id", "icon", "color", "sound", "image_url", "priority"),
}
_STOPPED = (CampaignStatus.killed, CampaignStatus.cancelled)


@dataclass(frozen=True)
class TextRow:
    """The title and body a device of `locale` sees on each platform (`locale` None: a
    device whose locale has no variant)."""

    locale: str | None
    ios: Text
    android: Text


def device_texts(content: Content) -> list[TextRow]:
    """One row for devices without a locale variant, then one per variant, each resolved
    exactly as the payloads are built (`pick_text`: variant, then platform override, then
    the default)."""
    locales: list[str | None] = [None, *content.locales]
    return [
        TextRow(loc, pick_text(content, loc, "ios"), pick_text(content, loc, "android"))
        for loc in locales
    ]


def platform_options(content: Content) -> dict[str, list[tuple[str, str]]]:
    """Per platform, the override's own title and body and its other options, as set."""
    shown: dict[str, list[tuple[str, str]]] = {}
    for platform in PLATFORMS:
        options = getattr(content, platform)
        if options is None:
            continue
        items = [
            (name, _option(getattr(options, name)))
            for name in ("title", "body", *_OPTIONS[platform])
            if getattr(options, name) is not None
        ]
        shown[platform] = items
    return shown


def _option(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def rules_text(rules: Mapping[str, Any]) -> str:
    """A stored rule tree for a person: `all of (…)`, `any of (…)`, `not (…)`, conditions as
    `field op value`; values as JSON so a string and a number never look alike."""
    if rules.get("everyone") is True:
        return "everyone (every active device)"
    return _node(rules)


def _node(node: Any) -> str:
    if not isinstance(node, Mapping):
        return json.dumps(node, ensure_ascii=False)
    for kind in ("all", "any"):
        if kind in node and isinstance(node[kind], Sequence):
            parts = ", ".join(_node(child) for child in node[kind])
            return f"{kind} of ({parts})"
    if "not" in node:
        return f"not ({_node(node['not'])})"
    value = json.dumps(node.get("value"), ensure_ascii=False)
    return f"{node.get('field')} {node.get('op')} {value}"


def wave_state(campaign: CampaignStatus, wave: str) -> str:
    """A wave's state as the page names it. After a kill or a cancel a wave that was never
    released will never send: it reads "not sent", not "pending"; one stopped mid-way reads
    "stopped"."""
    if campaign in _STOPPED:
        if wave == WaveStatus.pending:
            return "not sent"
        if wave == WaveStatus.sending:
            return "stopped"
    return str(wave)


@dataclass(frozen=True)
class Reach:
    """How far a campaign has gone into its whole audience: `done` deliveries with an
    outcome out of `audience` devices (the audience size at its latest wave's release;
    None before any wave was released)."""

    done: int
    audience: int | None

    @property
    def percent(self) -> str:
        if not self.audience:
            return "—"
        share = 100 * self.done / self.audience
        if 0 < share < 0.1:
            return "< 0.1 %"
        return f"{round(share, 1):g} %"


def reach(view: CampaignOut, done: int) -> Reach:
    released = [w.audience_size for w in view.waves if w.audience_size is not None]
    return Reach(done=done, audience=released[-1] if released else None)


def hold_text(seconds: int) -> str:
    """A hold for a person, as the guard's messages write it: 600 → "10 min", 90 → "90 s",
    7200 → "2 h"."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def quiet_hours_text(priority: str, setting: str | None, in_force: str | None) -> str:
    """The quiet hours a campaign's devices keep, and where they come from: `setting` is
    the campaign's own (None: the deployment's; "off"), `in_force` the window the sender
    applies (`PreviewOut.quiet_hours`)."""
    if priority == CampaignPriority.critical:
        return "none: a critical campaign is exempt from quiet hours"
    if setting == "off":
        return "off"
    if setting is not None:
        return f"{in_force or setting}, device-local (the campaign's own)"
    if in_force is None:
        return "none (this deployment has none)"
    return f"{in_force}, device-local (this deployment's)"
