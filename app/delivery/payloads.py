"""Campaign content → the payloads FCM and APNs receive (pure).

The same functions check sizes at campaign creation and build what providers send, so a
campaign that was accepted never meets a size refusal from a provider mid-rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from app.campaigns.schemas import CAMPAIGN_COLLAPSE_ID, REF_KEY, Content

PAYLOAD_LIMIT = 4096
# The longest reference a push can carry: a delivery id is a BIGINT, at most 19 digits.
LONGEST_REF = "9" * 19
# Any campaign id: every one is a UUID's 36 characters.
ANY_CAMPAIGN_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Text:
    title: str
    body: str


def pick_text(content: Content, locale: str | None, platform: str) -> Text:
    """The title and body a device sees: its locale's variant (exact tag, then language),
    then the platform override, then the default."""
    title, body = content.title, content.body
    options = content.ios if platform == "ios" else content.android
    if options is not None:
        title = options.title or title
        body = options.body or body
    if locale and content.locales:
        wanted = locale.lower()
        variants = {tag.lower(): v for tag, v in content.locales.items()}
        variant = variants.get(wanted) or variants.get(wanted.split("-")[0])
        if variant is not None:
            title, body = variant.title, variant.body
    return Text(title, body)


def _data(content: Content) -> dict[str, str]:
    data = dict(content.data)
    # Refused at creation; a campaign stored before the key was reserved loses it to the ref.
    data.pop(REF_KEY, None)
    if content.deep_link:
        data.setdefault("deep_link", content.deep_link)
    return data


def collapse_identity(content: Content, campaign_id: str) -> str | None:
    """The collapse identity every push of the campaign carries (APNs `apns-collapse-id`,
    Android `notification.tag`), or None when the campaign turned it off.

    A device gets one push per campaign, so one identity per campaign replaces only that
    push: sent again after a crash, it takes the first one's place instead of stacking. The
    default is `wavecast-<campaign id>` (45 bytes, within APNs' 64), or the campaign's
    `collapse_key` when it gave one (which already set `apns-collapse-id`)."""
    if content.collapse_id == CAMPAIGN_COLLAPSE_ID:
        return content.collapse_key or f"wavecast-{campaign_id}"
    return content.collapse_id


def apns_payload(content: Content, locale: str | None) -> dict[str, Any]:
    text = pick_text(content, locale, "ios")
    options = content.ios
    alert: dict[str, str] = {"title": text.title, "body": text.body}
    aps: dict[str, Any] = {"alert": alert}
    if options is not None:
        if options.subtitle:
            alert["subtitle"] = options.subtitle
        if options.sound:
            aps["sound"] = options.sound
        if options.badge is not None:
            aps["badge"] = options.badge
        if options.category:
            aps["category"] = options.category
        if options.thread_id:
            aps["thread-id"] = options.thread_id
        if options.mutable_content:
            aps["mutable-content"] = 1
        if options.interruption_level:
            aps["interruption-level"] = options.interruption_level
    else:
        aps["sound"] = "default"
    return {"aps": aps, **_data(content)}


def fcm_message(
    content: Content, locale: str | None, collapse_id: str | None = None
) -> dict[str, Any]:
    """The FCM v1 `message` fields that count toward its payload limit (without token);
    `collapse_id` (from `collapse_identity`) becomes the Android notification's `tag`."""
    text = pick_text(content, locale, "android")
    message: dict[str, Any] = {"notification": {"title": text.title, "body": text.body}}
    data = _data(content)
    if data:
        message["data"] = data
    options = content.android
    # A time to live of 0 is Wavecast's "never goes stale"; FCM would read "0s" as "now or
    # never", so it is left out (FCM's own default then applies).
    android: dict[str, Any] = {"ttl": f"{content.ttl_seconds}s"} if content.ttl_seconds else {}
    notification: dict[str, Any] = {}
    if options is not None:
        android["priority"] = options.priority.upper()
        for name, key in (
            ("channel_id", "channel_id"),
            ("icon", "icon"),
            ("color", "color"),
            ("sound", "sound"),
            ("image_url", "image"),
        ):
            value = getattr(options, name)
            if value:
                notification[key] = value
    if collapse_id is not None:
        # A notification shown with the same tag replaces the one already in the drawer.
        notification["tag"] = collapse_id
    if notification:
        android["notification"] = notification
    if content.collapse_key:
        android["collapse_key"] = content.collapse_key
    message["android"] = android
    return message


# The delivery reference. Payloads are built once per locale per batch; each message then
# gets its own reference by the cheapest copy its provider allows (a new data dict for FCM,
# two byte joins for APNs), never by building the payload again.


def ref_of(delivery_id: int) -> str:
    """A delivery's reference as pushes carry it: a string, as FCM data values must be."""
    return str(delivery_id)


def apns_with_ref(payload: Mapping[str, Any], ref: str) -> dict[str, Any]:
    """An APNs payload with its reference: a custom key beside `aps`."""
    return {**payload, REF_KEY: ref}


def fcm_with_ref(message: Mapping[str, Any], ref: str) -> dict[str, Any]:
    """An FCM message with its reference in `data` (the rest shared with `message`)."""
    return {**message, "data": {**message.get("data", {}), REF_KEY: ref}}


@dataclass(frozen=True)
class EncodedWithRef:
    """An APNs payload encoded once, waiting for each message's reference.

    `encode(ref)` equals `orjson.dumps(apns_with_ref(payload, ref))` byte for byte (the key is
    last, and a reference is digits, which JSON never escapes): what `size` measures is what
    is sent."""

    head: bytes

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> EncodedWithRef:
        encoded = orjson.dumps(payload)
        # `{...}` → `{...,"wavecast_ref":"`; a payload always holds `aps`, so never `{}`.
        return cls(encoded[:-1] + b',"' + REF_KEY.encode() + b'":"')

    def encode(self, ref: str) -> bytes:
        return self.head + ref.encode() + b'"}'


def size(payload: Mapping[str, Any]) -> int:
    return len(orjson.dumps(payload))


def largest_sizes(content: Content) -> dict[str, int]:
    """The largest payload each platform would carry, over every locale variant, with the
    longest delivery reference a push can carry."""
    locales: list[str | None] = [None, *content.locales]
    # The tag counts toward FCM's limit; APNs carries its identity in a header.
    tag = collapse_identity(content, ANY_CAMPAIGN_ID)
    return {
        "ios": max(size(apns_with_ref(apns_payload(content, loc), LONGEST_REF)) for loc in locales),
        "android": max(
            size(fcm_with_ref(fcm_message(content, loc, tag), LONGEST_REF)) for loc in locales
        ),
    }
