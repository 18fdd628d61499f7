"""Request and response shapes for campaigns."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.campaigns.models import CampaignKind, CampaignPriority
from app.campaigns.state import CampaignStatus
from app.checks.spec import CheckList
from app.guard.verdict import GuardVerdict
from app.instants import Instant

Text256 = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Text2048 = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
DataKey = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
# Every push carries its delivery's id under this key (app.delivery.payloads), so the app can
# report what became of it (POST /v1/events).
REF_KEY = "wavecast_ref"
# FCM and APNs reserve these keys; a data map that used them would be refused by the
# provider mid-campaign, so it is refused at creation instead. Wavecast reserves its own.
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type", "aps", REF_KEY})
RESERVED_DATA_PREFIXES = ("google.", "gcm.")
DEFAULT_TTL = timedelta(hours=4)
# A push's collapse identity (APNs `apns-collapse-id`, Android `notification.tag`): a push sent
# again after a crash replaces the first on the phone instead of stacking beside it. This
# default stands for one derived from the campaign (app.delivery.payloads.collapse_identity).
CAMPAIGN_COLLAPSE_ID = "{campaign}"
# Printable ASCII without spaces: as many bytes as characters, so 64 fits APNs' 64-byte limit,
# and nothing a header or a tag could mangle.
CollapseId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[!-~]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IosOptions(_Strict):
    title: Text256 | None = None
    body: Text2048 | None = None
    subtitle: Text256 | None = None
    sound: Annotated[str, StringConstraints(max_length=64)] | None = "default"
    badge: Annotated[int, Field(ge=0, le=99_999)] | None = None
    category: Annotated[str, StringConstraints(max_length=64)] | None = None
    thread_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    mutable_content: bool = False
    priority: Literal[5, 10] = 10
    interruption_level: Literal["passive", "active", "time-sensitive"] | None = None


class AndroidOptions(_Strict):
    title: Text256 | None = None
    body: Text2048 | None = None
    channel_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    icon: Annotated[str, StringConstraints(max_length=64)] | None = None
    color: Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")] | None = None
    sound: Annotated[str, StringConstraints(max_length=64)] | None = "default"
    image_url: Annotated[str, StringConstraints(max_length=1024)] | None = None
    priority: Literal["normal", "high"] = "high"


class LocaleVariant(_Strict):
    title: Text256
    body: Text2048


class Content(_Strict):
    title: Text256
    body: Text2048
    data: dict[DataKey, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=64
    )
    deep_link: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None
    ios: IosOptions | None = None
    android: AndroidOptions | None = None
    locales: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")],
        LocaleVariant,
    ] = Field(default_factory=dict, max_length=100)
    ttl_seconds: Annotated[int, Field(ge=0, le=28 * 24 * 3600)] = int(DEFAULT_TTL.total_seconds())
    collapse_key: Annotated[str, StringConstraints(max_length=64)] | None = None
    # The default derives one per campaign; a string is the campaign's own (shared with other
    # campaigns, a later push replaces an earlier one); null sends none, for an app that
    # replaces notifications itself (every push carries its `wavecast_ref`).
    collapse_id: CollapseId | None = CAMPAIGN_COLLAPSE_ID

    @field_validator("collapse_id")
    @classmethod
    def _collapse_off_means_off(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("collapse_key"):
            raise ValueError(
                "null turns collapse identities off, but collapse_key sets APNs' "
                "apns-collapse-id: drop one of them"
            )
        return value

    @field_validator("data")
    @classmethod
    def _no_reserved_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES):
                owner = "Wavecast" if key == REF_KEY else "FCM or APNs"
                raise ValueError(f"data key {key!r} is reserved by {owner}")
        return value

    def text_fields(self) -> dict[str, str]:
        """Every human-visible or link text, by field path, for the content lint."""
        fields: dict[str, str] = {"title": self.title, "body": self.body}
        for platform in ("ios", "android"):
            options = getattr(self, platform)
            if options is not None:
                for name in ("title", "body", "subtitle"):
                    text = getattr(options, name, None)
                    if text:
                        fields[f"{platform}.{name}"] = text
        # The rich-notification image is shown with the text, so a test picture or a link to a
        # test host is as visible as a test title. iOS has no image option: a rich iOS push
        # fetches its picture from a data value, and data values are linted below.
        if self.android is not None and self.android.image_url:
            fields["android.image_url"] = self.android.image_url
        for tag, variant in self.locales.items():
            fields[f"locales.{tag}.title"] = variant.title
            fields[f"locales.{tag}.body"] = variant.body
        for key, value in self.data.items():
            fields[f"data.{key}"] = value
        if self.deep_link:
            fields["deep_link"] = self.deep_link
        return fields


class Audience(_Strict):
    segment_id: uuid.UUID | None = None
    rules: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.segment_id is None) == (self.rules is None):
            raise ValueError("give exactly one of segment_id or rules")
        return self


class WaveIn(_Strict):
    percent: Annotated[Decimal, Field(gt=0, le=100, max_digits=8, decimal_places=4)]
    hold_seconds: Annotated[int, Field(ge=0, le=30 * 24 * 3600)] = 0


# A wall-clock time of day, "HH:MM" (24-hour).
LocalTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class Rollout(_Strict):
    start_at: Instant | None = None
    waves: list[WaveIn] = Field(min_length=1, max_length=20)
    # Send each device at the next occurrence of this time in its own time zone, once its
    # wave is released (devices without a zone use WAVECAST_DEFAULT_TIMEZONE).
    local_time: LocalTime | None = None
    # Wave checks (app.checks): each wave's must pass, with no failure since, before the
    # next wave is released; a failing one pauses the campaign.
    checks: CheckList = Field(default_factory=list)


class QuietHoursIn(_Strict):
    """A device-local window in which nothing is sent; it may cross midnight."""

    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise ValueError("quiet hours need a start and an end that differ")
        return self

    def text(self) -> str:
        return f"{self.start}-{self.end}"


# The column holds four decimal places: a finer value is refused, not stored rounded.
ThresholdPercent = Annotated[Decimal, Field(ge=0, le=100, decimal_places=4)]


class Throttle(_Strict):
    per_second: Annotated[int, Field(ge=1, le=1_000_000)]
    # The opens budget (app.rollout.opens_budget): the most push-driven opens per second the
    # backend can take; the engine lowers the send rate each second to keep the opens it
    # predicts under it. Absent: no budget.
    max_opens_per_second: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class Override(_Strict):
    reason: Annotated[str, StringConstraints(min_length=10, max_length=2000, strip_whitespace=True)]


class CampaignCreate(_Strict):
    name: Text256
    kind: CampaignKind
    content: Content
    audience: Audience
    rollout: Rollout
    throttle: Throttle | None = None
    failure_threshold_percent: ThresholdPercent | None = None
    override: Override | None = None
    # Absent: the deployment's quiet hours (WAVECAST_QUIET_HOURS); a window: the campaign's
    # own; null: none at all (only with priority "critical"; `service.check_timing`).
    quiet_hours: QuietHoursIn | None = None
    # Rows not sent by then end as `expired`; providers are told the time left.
    expires_at: Instant | None = None
    # "critical" needs the campaigns:critical scope; it is exempt from frequency caps and
    # quiet hours.
    priority: CampaignPriority = CampaignPriority.normal

    def quiet_hours_setting(self) -> str | None:
        """What the campaign stores: None (the deployment's), "off", or its window."""
        if "quiet_hours" not in self.model_fields_set:
            return None
        return self.quiet_hours.text() if self.quiet_hours else "off"


class CampaignPatch(_Strict):
    name: Text256 | None = None
    content: Content | None = None
    audience: Audience | None = None
    rollout: Rollout | None = None
    throttle: Throttle | None = None
    failure_threshold_percent: ThresholdPercent | None = None
    override: Override | None = None
    # As in CampaignCreate; null turns quiet hours off (critical only), absent leaves them.
    quiet_hours: QuietHoursIn | None = None
    expires_at: Instant | None = None
    priority: CampaignPriority | None = None


class Reason(_Strict):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]


class OptionalReason(_Strict):
    reason: (
        Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
        | None
    ) = None


class StartRequest(OptionalReason):
    override: Override | None = None


class PromoteRequest(OptionalReason):
    """Skip the rest of the current wave's hold. The wave's checks must still have passed,
    unless `override` says why the next wave goes without them."""

    override: Override | None = None


class ExtendHoldRequest(_Strict):
    seconds: Annotated[int, Field(ge=1, le=30 * 24 * 3600)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]


class WaveOut(BaseModel):
    index: int
    percent: Decimal
    hold_seconds: int
    status: str
    audience_size: int | None
    target_count: int | None
    targeted: int
    queued: int
    sending: int
    retrying: int
    sent: int
    failed: int
    invalid: int
    cancelled: int
    blocked: int
    expired: int
    capped: int
    # Engagement reports (POST /v1/events), each (push, type) counted once.
    received: int = 0
    opened: int = 0
    converted: int = 0
    # opened / sent; null before anything is sent.
    open_rate: float | None = None
    started_at: datetime | None
    finished_at: datetime | None
    hold_until: datetime | None


class CheckResultOut(BaseModel):
    """A wave check's newest run during the current wave."""

    name: str
    wave: int
    result: Literal["pass", "fail", "inconclusive"]
    value: float | None
    # Why it was inconclusive, or the condition it was held to.
    detail: str | None
    observed_at: datetime


class CampaignOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: CampaignKind
    status: CampaignStatus
    status_reason: str | None
    content: dict[str, Any]
    audience: dict[str, Any]
    start_at: datetime | None
    # per_second and max_opens_per_second as set; with a budget, effective_per_second and
    # effective_reason: the send rate the engine last allowed and why.
    throttle: dict[str, Any]
    failure_threshold_percent: Decimal
    current_wave: int | None
    next_wave_at: datetime | None
    waves: list[WaveOut]
    guard_override_reason: str | None
    local_time: str | None
    # The campaign's own wave checks (the deployment's WAVECAST_DEFAULT_CHECKS apply too, to
    # live campaigns).
    checks: list[dict[str, Any]] = Field(default_factory=list)
    # What each check (its own and the deployment's) saw last during the current wave.
    check_results: list[CheckResultOut] = Field(default_factory=list)
    # The campaign's own quiet hours ("21:00-08:00"), "off", or null: the deployment's.
    quiet_hours: str | None
    expires_at: datetime | None
    priority: CampaignPriority
    created_by: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class CampaignSummary(BaseModel):
    id: uuid.UUID
    name: str
    kind: CampaignKind
    status: CampaignStatus
    current_wave: int | None
    waves: int
    created_at: datetime
    started_at: datetime | None


class CampaignPage(BaseModel):
    items: list[CampaignSummary]
    next_cursor: str | None


class WavePlan(BaseModel):
    index: int
    percent: Decimal
    hold_seconds: int
    cumulative_devices: int
    new_devices: int


class ZoneShare(BaseModel):
    """One time zone's share of the audience, and when its devices would first be due if
    the first wave were released now."""

    timezone: str
    devices: int
    # Of `devices`, those without a zone of their own (or with one this server's time zone
    # database does not know): they are sent by the deployment's default zone, this one.
    without_zone: int
    # The next occurrence of the campaign's local time in this zone (now, without one),
    # moved to the end of the zone's quiet hours when it falls inside them. UTC.
    first_send_at: datetime
    # The zone's wall clock at `first_send_at`, "HH:MM".
    local_time_there: str
    # Quiet hours moved the first send to their end.
    after_quiet_hours: bool
    # A device released now would reach its deadline (the content's time to live,
    # `expires_at`, the deployment's longest lifetime) before `first_send_at`: it would end
    # as expired, never sent.
    past_deadline: bool


class PreviewOut(BaseModel):
    valid: bool
    audience_size: int
    by_platform: dict[str, int]
    waves: list[WavePlan]
    payload_bytes: dict[str, int]
    guard: GuardVerdict
    # The timing rules the schedule applies: the campaign's local time, and the quiet hours
    # in force ("21:00-08:00"; None: none, e.g. for a critical campaign).
    local_time: str | None = None
    quiet_hours: str | None = None
    # One entry per time zone of the audience, earliest first send first; at most
    # `service.SCHEDULE_LIMIT` entries, the later zones counted below.
    schedule: list[ZoneShare] = Field(default_factory=list)
    schedule_more_zones: int = 0
    schedule_more_devices: int = 0


class StopOutcome(BaseModel):
    campaign: CampaignOut
    in_flight_at_answer: int = Field(
        description="batches of provider requests still in flight at the answer: always 0, "
        "since a stop answers only once nothing is (otherwise 503, not yet confirmed)"
    )


class DeliveryOut(BaseModel):
    id: int
    device_id: uuid.UUID
    wave: int
    status: str
    attempts: int
    provider: str | None
    provider_message_id: str | None
    error_code: str | None
    error_detail: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
