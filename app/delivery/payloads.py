"""Campaign content → the payloads FCM and APNs receive (pure).

The same functions check sizes at campaign creation and build what providers send, so a
campaign that was accepted never meets a size refusal from a provider mid-rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from app.campaigns.schemas import Content

PAYLOAD_LIMIT = 4096


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
    if content.deep_link:
        data.setdefault("deep_link", content.deep_link)
    return data


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


def fcm_message(content: Content, locale: str | None) -> dict[str, Any]:
    """The FCM v1 `message` fields that count toward its payload limit (without token)."""
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
    if notification:
        android["notification"] = notification
    if content.collapse_key:
        android["collapse_key"] = content.collapse_key
    message["android"] = android
    return message


def size(payload: Mapping[str, Any]) -> int:
    return len(orjson.dumps(payload))


def largest_sizes(content: Content) -> dict[str, int]:
    """The largest payload each platform would carry, over every locale variant."""
    locales: list[str | None] = [None, *content.locales]
    return {
        "ios": max(size(apns_payload(content, loc)) for loc in locales),
        "android": max(size(fcm_message(content, loc)) for loc in locales),
    }
