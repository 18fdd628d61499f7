"""FCM HTTP v1 ``messages:send`` request validation, for the parts of ``Message`` Wavecast uses.

Pure functions, no I/O. The checks mirror what Google answers with 400 INVALID_ARGUMENT:
exactly one target, a non-empty token, known field names (snake_case or lowerCamelCase, as the
proto3 JSON mapping allows), string-to-string maps for every ``data``/``headers`` map, object
shapes for ``notification``/``android``/``apns``/``webpush``/``fcm_options``, Android enums and
durations, reserved data keys, and the 4096-byte payload limit.

Payload size, as this fake defines it: the UTF-8 length of the message serialised as compact
JSON without its target field (``token``/``topic``/``condition``/``fid``). It is only computed
when the raw request body is itself over the limit, since the body always contains the message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_PAYLOAD_BYTES = 4096

_TARGETS = ("token", "topic", "condition", "fid")
_MESSAGE_FIELDS = frozenset(
    {"name", "data", "notification", "android", "webpush", "apns", "fcm_options", *_TARGETS}
)
_NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
_ANDROID_FIELDS = frozenset(
    {
        "collapse_key",
        "priority",
        "ttl",
        "restricted_package_name",
        "data",
        "notification",
        "fcm_options",
        "direct_boot_ok",
        "bandwidth_constrained_ok",
        "restricted_satellite_ok",
    }
)
_ANDROID_BOOL_FIELDS = ("direct_boot_ok", "bandwidth_constrained_ok", "restricted_satellite_ok")
_APNS_FIELDS = frozenset({"headers", "payload", "fcm_options", "live_activity_token"})
_WEBPUSH_FIELDS = frozenset({"headers", "data", "notification", "fcm_options"})
_FCM_OPTIONS_FIELDS = frozenset({"analytics_label"})
_ANDROID_PRIORITIES = frozenset({"normal", "high", "NORMAL", "HIGH"})
_DURATION = re.compile(r"^\d{1,12}(\.\d{1,9})?s$")
_ANALYTICS_LABEL = re.compile(r"^[a-zA-Z0-9-_.~%]{1,50}$")
_RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
_CAMEL = re.compile(r"(?<!^)([A-Z])")


@dataclass(frozen=True, slots=True)
class Violation:
    """A field FCM would refuse, as Google reports it in ``google.rpc.BadRequest``."""

    field: str
    description: str


def snake(name: str) -> str:
    """``fcmOptions`` -> ``fcm_options``; proto3 JSON accepts either spelling."""
    # islower() is one C call and true for every snake_case name: the common case stays cheap.
    return name if name.islower() else _CAMEL.sub(r"_\1", name).lower()


def validate_send_request(body: Any) -> tuple[str | None, Violation | None]:
    """Validate a parsed ``messages:send`` body. Returns ``(token, violation_or_None)``.

    The token is returned even when something else is wrong, so faults and records can be keyed
    by it.
    """
    if not isinstance(body, dict):
        return None, Violation("", "Invalid JSON payload received. Expected an object.")
    for key in body:
        if snake(key) not in ("message", "validate_only"):
            return None, _unknown(key, "")
    message = body.get("message")
    if not isinstance(message, dict):
        return None, Violation("message", "Request contains an invalid argument: no message.")
    token = message.get("token")
    token_str = token if isinstance(token, str) else None
    return token_str, validate_message(message)


def validate_message(message: dict[str, Any]) -> Violation | None:
    """Validate one ``Message`` object; ``None`` when FCM would accept it."""
    fields = {}
    for key, value in message.items():
        name = snake(key)
        if name not in _MESSAGE_FIELDS:
            return _unknown(key, "message")
        fields[name] = value

    targets = [t for t in _TARGETS if t in fields]
    if not targets:
        return Violation("message", "Recipient of the message is not set.")
    if len(targets) > 1:
        return Violation(
            "message",
            f"Invalid JSON payload received. Oneof field 'target' is already set. "
            f"Cannot set '{targets[1]}'",
        )
    if "token" in fields:
        token = fields["token"]
        if not isinstance(token, str) or not token.strip():
            return Violation(
                "message.token", "The registration token is not a valid FCM registration token"
            )

    for name, check in _FIELD_CHECKS:
        if name in fields and fields[name] is not None:
            problem = check(fields[name])
            if problem is not None:
                return problem
    return None


def payload_size(message: dict[str, Any]) -> int:
    """Size of ``message`` as this fake counts it against :data:`MAX_PAYLOAD_BYTES`."""
    content = {k: v for k, v in message.items() if snake(k) not in _TARGETS}
    return len(json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode())


def check_size(raw_body_length: int, message: dict[str, Any]) -> Violation | None:
    """The size check, skipped when the raw body proves the payload is small enough."""
    if raw_body_length <= MAX_PAYLOAD_BYTES:
        return None
    size = payload_size(message)
    if size <= MAX_PAYLOAD_BYTES:
        return None
    return Violation(
        "message",
        f"Message is too big: {size} bytes of payload; the limit is {MAX_PAYLOAD_BYTES} bytes.",
    )


def _unknown(key: str, where: str) -> Violation:
    at = f" at '{where}'" if where else ""
    return Violation(
        where, f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
    )


def _type_error(path: str, value: Any, expected: str) -> Violation:
    return Violation(path, f"Invalid value at '{path}' ({expected}), {json.dumps(value)}")


def _string_map(value: Any, path: str, *, data_keys: bool = False) -> Violation | None:
    if not isinstance(value, dict):
        return _type_error(path, value, "type.googleapis.com/google.protobuf.Map")
    for index, (key, item) in enumerate(value.items()):
        if not isinstance(item, str):
            return _type_error(f"{path}[{index}].value", item, "TYPE_STRING")
        if data_keys and (key in _RESERVED_DATA_KEYS or key.startswith(("google", "gcm"))):
            return Violation(f"{path}[{index}].key", f"Invalid data payload key: {key}")
    return None


def _object(
    value: Any, path: str, allowed: frozenset[str]
) -> tuple[dict[str, Any], Violation | None]:
    if not isinstance(value, dict):
        return {}, _type_error(path, value, "TYPE_MESSAGE")
    fields: dict[str, Any] = {}
    for key, item in value.items():
        name = snake(key)
        if name not in allowed:
            return {}, _unknown(key, path)
        fields[name] = item
    return fields, None


def _flat_strings(value: Any, path: str, allowed: frozenset[str]) -> Violation | None:
    fields, problem = _object(value, path, allowed)
    if problem is not None:
        return problem
    for name, item in fields.items():
        if item is not None and not isinstance(item, str):
            return _type_error(f"{path}.{name}", item, "TYPE_STRING")
    return None


def _fcm_options(value: Any, path: str) -> Violation | None:
    fields, problem = _object(value, path, _FCM_OPTIONS_FIELDS)
    if problem is not None:
        return problem
    label = fields.get("analytics_label")
    if label is not None and (not isinstance(label, str) or not _ANALYTICS_LABEL.match(label)):
        return Violation(f"{path}.analytics_label", "Invalid analytics label.")
    return None


def _android(value: Any) -> Violation | None:
    path = "message.android"
    fields, problem = _object(value, path, _ANDROID_FIELDS)
    if problem is not None:
        return problem
    for name in ("collapse_key", "restricted_package_name"):
        if name in fields and not isinstance(fields[name], str):
            return _type_error(f"{path}.{name}", fields[name], "TYPE_STRING")
    priority = fields.get("priority")
    if priority is not None and priority not in _ANDROID_PRIORITIES:
        return Violation(
            f"{path}.priority",
            f"Invalid value at '{path}.priority' "
            f"(type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), "
            f"{json.dumps(priority)}",
        )
    ttl = fields.get("ttl")
    if ttl is not None and (not isinstance(ttl, str) or not _DURATION.match(ttl)):
        return Violation(
            f"{path}.ttl",
            f"Invalid value at '{path}.ttl' (type.googleapis.com/"
            f"google.protobuf.Duration), {json.dumps(ttl)}",
        )
    for name in _ANDROID_BOOL_FIELDS:
        if name in fields and not isinstance(fields[name], bool):
            return _type_error(f"{path}.{name}", fields[name], "TYPE_BOOL")
    if fields.get("data") is not None:
        problem = _string_map(fields["data"], f"{path}.data", data_keys=True)
        if problem is not None:
            return problem
    notification = fields.get("notification")
    if notification is not None and not isinstance(notification, dict):
        return _type_error(f"{path}.notification", notification, "TYPE_MESSAGE")
    if fields.get("fcm_options") is not None:
        return _fcm_options(fields["fcm_options"], f"{path}.fcm_options")
    return None


def _apns(value: Any) -> Violation | None:
    path = "message.apns"
    fields, problem = _object(value, path, _APNS_FIELDS)
    if problem is not None:
        return problem
    if fields.get("headers") is not None:
        problem = _string_map(fields["headers"], f"{path}.headers")
        if problem is not None:
            return problem
    payload = fields.get("payload")
    if payload is not None:
        if not isinstance(payload, dict):
            return _type_error(
                f"{path}.payload", payload, "type.googleapis.com/google.protobuf.Struct"
            )
        aps = payload.get("aps")
        if aps is not None and not isinstance(aps, dict):
            return Violation(f"{path}.payload.aps", "apns.payload.aps must be a JSON object")
    token = fields.get("live_activity_token")
    if token is not None and not isinstance(token, str):
        return _type_error(f"{path}.live_activity_token", token, "TYPE_STRING")
    if fields.get("fcm_options") is not None:
        return _fcm_options_apns(fields["fcm_options"], f"{path}.fcm_options")
    return None


def _fcm_options_apns(value: Any, path: str) -> Violation | None:
    fields, problem = _object(value, path, frozenset({"analytics_label", "image"}))
    if problem is not None:
        return problem
    image = fields.get("image")
    if image is not None and not isinstance(image, str):
        return _type_error(f"{path}.image", image, "TYPE_STRING")
    return _fcm_options({k: v for k, v in fields.items() if k != "image"}, path)


def _data(value: Any) -> Violation | None:
    return _string_map(value, "message.data", data_keys=True)


def _notification(value: Any) -> Violation | None:
    return _flat_strings(value, "message.notification", _NOTIFICATION_FIELDS)


def _message_fcm_options(value: Any) -> Violation | None:
    return _fcm_options(value, "message.fcm_options")


def _webpush(value: Any) -> Violation | None:
    path = "message.webpush"
    fields, problem = _object(value, path, _WEBPUSH_FIELDS)
    if problem is not None:
        return problem
    for name in ("headers", "data"):
        if fields.get(name) is not None:
            problem = _string_map(fields[name], f"{path}.{name}")
            if problem is not None:
                return problem
    notification = fields.get("notification")
    if notification is not None and not isinstance(notification, dict):
        return _type_error(f"{path}.notification", notification, "TYPE_MESSAGE")
    if fields.get("fcm_options") is not None and not isinstance(fields["fcm_options"], dict):
        return _type_error(f"{path}.fcm_options", fields["fcm_options"], "TYPE_MESSAGE")
    return None


_FIELD_CHECKS: tuple[tuple[str, Callable[[Any], Violation | None]], ...] = (
    ("data", _data),
    ("notification", _notification),
    ("android", _android),
    ("apns", _apns),
    ("webpush", _webpush),
    ("fcm_options", _message_fcm_options),
)
