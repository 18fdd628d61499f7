"""Pure logic of the fakes: fault rules, record store, FCM and APNs request validation."""

from __future__ import annotations

import json
import random
import time

import pytest
from wavecast_tools.fakes.apns_validation import (
    make_device_token,
    token_environment,
    validate_notification,
)
from wavecast_tools.fakes.faults import FaultRule, RuleBook
from wavecast_tools.fakes.fcm_validation import MAX_PAYLOAD_BYTES, check_size, validate_send_request
from wavecast_tools.fakes.records import Record, RecordStore


def test_rule_count_is_consumed_then_rule_stops_matching() -> None:
    book = RuleBook(["UNAVAILABLE"])
    rule = book.add(FaultRule(error="UNAVAILABLE", count=2))
    assert book.pick("t") is rule
    assert book.pick("t") is rule
    assert book.pick("t") is None
    assert rule.applied == 2
    assert rule.to_json()["active"] is False


def test_rule_matches_exact_token_and_prefix_in_insertion_order() -> None:
    book = RuleBook(["A", "B"])
    exact = book.add(FaultRule(error="A", token="abc1"))
    prefix = book.add(FaultRule(error="B", token_prefix="abc"))
    assert book.pick("abc1") is exact
    assert book.pick("abc2") is prefix
    assert book.pick("zzz") is None
    assert book.pick(None) is None


def test_rule_expires_after_its_period() -> None:
    book = RuleBook(["A"])
    rule = book.add(FaultRule(error="A", seconds=0.05))
    assert book.pick("t") is rule
    time.sleep(0.06)
    assert book.pick("t") is None


def test_rule_probability_fires_about_that_often() -> None:
    random.seed(7)
    book = RuleBook(["A"])
    book.add(FaultRule(error="A", probability=0.3))
    fired = sum(book.pick("t") is not None for _ in range(2000))
    assert 450 < fired < 750


def test_rulebook_refuses_unknown_errors_and_empty_rules() -> None:
    book = RuleBook(["A"])
    with pytest.raises(ValueError, match="unknown error"):
        book.add(FaultRule(error="NOPE"))
    with pytest.raises(ValueError, match="needs an error"):
        book.add(FaultRule(token="t"))
    with pytest.raises(ValueError, match="action"):
        FaultRule(action="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown rule fields"):
        FaultRule.from_json({"error": "A", "tokn": "x"})
    assert book.add(FaultRule(latency=0.1)).latency == 0.1
    assert book.add(FaultRule(action="drop")).action == "drop"


def test_record_store_sequence_survives_clear_and_since_filters() -> None:
    store = RecordStore()
    for _ in range(5):
        seq = store.next_seq()
        store.append(Record(seq, 0.0, 0.0, "send", "POST", "/", "t", "h2", 1, 1, body=b"{}"))
    assert [r.seq for r in store.records(since=3)] == [4, 5]
    store.clear()
    seq = store.next_seq()
    assert seq == 6
    assert store.received == 1


def test_light_recording_keeps_no_bodies_and_off_keeps_nothing() -> None:
    light, off = RecordStore("light"), RecordStore("off")
    for store in (light, off):
        record = Record(store.next_seq(), 0.0, 0.0, "send", "POST", "/", "t", "h2", 1, 1)
        record.body = b'{"a": 1}'
        store.append(record)
    assert light.records()[0].body == b""
    assert off.records() == []
    assert off.received == 1


def test_record_payload_is_parsed_lazily_once() -> None:
    record = Record(1, 0.0, 0.0, "send", "POST", "/", "t", "h2", 1, 1, body=b'{"a": 1}')
    assert record.payload == {"a": 1}
    record.body = b"not json any more"
    assert record.payload == {"a": 1}
    assert json.dumps(record.to_json())


# -- FCM ----------------------------------------------------------------------------------------


def _fcm(message: dict[str, object]) -> str | None:
    _, violation = validate_send_request({"message": message})
    return None if violation is None else violation.description


def test_fcm_accepts_what_firebase_admin_sends() -> None:
    assert (
        _fcm(
            {
                "token": "t",
                "notification": {"title": "ęśąćż", "body": "b"},
                "data": {"k": "v"},
                "android": {"priority": "high", "ttl": "3600s", "collapse_key": "c"},
                "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"badge": 1}}},
                "fcmOptions": {"analyticsLabel": "wave-1"},
            }
        )
        is None
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({}, "Recipient of the message is not set."),
        ({"token": ""}, "not a valid FCM registration token"),
        ({"token": "t", "topic": "x"}, "Oneof field 'target'"),
        ({"token": "t", "data": {"k": 1}}, "Invalid value at 'message.data[0].value'"),
        ({"token": "t", "data": {"from": "x"}}, "Invalid data payload key: from"),
        ({"token": "t", "notification": {"title": 5}}, "message.notification.title"),
        ({"token": "t", "notification": {"subtitle": "x"}}, 'Unknown name "subtitle"'),
        ({"token": "t", "android": {"priority": "urgent"}}, "AndroidMessagePriority"),
        ({"token": "t", "android": {"ttl": "1h"}}, "google.protobuf.Duration"),
        ({"token": "t", "android": []}, "TYPE_MESSAGE"),
        ({"token": "t", "apns": {"payload": {"aps": "x"}}}, "aps must be a JSON object"),
        ({"token": "t", "apns": {"headers": {"apns-priority": 10}}}, "message.apns.headers"),
        ({"token": "t", "bogus": 1}, 'Unknown name "bogus"'),
    ],
)
def test_fcm_refuses_what_google_refuses(message: dict[str, object], expected: str) -> None:
    description = _fcm(message)
    assert description is not None
    assert expected in description


def test_fcm_payload_limit_is_4096_bytes_without_the_token() -> None:
    def message(size: int) -> dict[str, object]:
        # {"data":{"k":""}} is 17 bytes of JSON around the value.
        return {"token": "x" * 500, "data": {"k": "v" * (size - 17)}}

    fits, too_big = message(MAX_PAYLOAD_BYTES), message(MAX_PAYLOAD_BYTES + 1)
    assert check_size(len(json.dumps({"message": fits})), fits) is None
    violation = check_size(len(json.dumps({"message": too_big})), too_big)
    assert violation is not None
    assert "4097 bytes" in violation.description


# -- APNs ---------------------------------------------------------------------------------------

_TOPICS = frozenset({"com.example.app"})
_OK_HEADERS = {"apns-topic": "com.example.app", "apns-push-type": "alert"}


def _apns(
    headers: dict[str, str] | None = None,
    body: bytes = b'{"aps": {"alert": "hi"}}',
    token: str | None = None,
) -> str | None:
    refusal = validate_notification(
        token=make_device_token("sandbox", 1) if token is None else token,
        headers={**_OK_HEADERS, **(headers or {})},
        body=body,
        topics=_TOPICS,
        environment="sandbox",
    )
    return None if refusal is None else f"{refusal.status} {refusal.reason}"


def test_device_tokens_carry_their_environment() -> None:
    assert token_environment(make_device_token("sandbox", "x")) == "sandbox"
    assert token_environment(make_device_token("production", "x")) == "production"
    assert token_environment("ab" * 32) is None
    assert len(make_device_token("sandbox", 1)) == 64


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, None),
        ({"token": ""}, "400 MissingDeviceToken"),
        ({"token": "xyz"}, "400 BadDeviceToken"),
        ({"token": make_device_token("production", 1)}, "400 BadDeviceToken"),
        ({"headers": {"apns-topic": ""}}, "400 MissingTopic"),
        ({"headers": {"apns-topic": "com.other"}}, "400 BadTopic"),
        ({"headers": {"apns-push-type": "shout"}}, "400 InvalidPushType"),
        ({"headers": {"apns-push-type": "voip"}}, "400 BadTopic"),
        ({"headers": {"apns-push-type": "voip", "apns-topic": "com.example.app.voip"}}, None),
        ({"headers": {"apns-priority": "7"}}, "400 BadPriority"),
        ({"headers": {"apns-push-type": "background", "apns-priority": "10"}}, "400 BadPriority"),
        ({"headers": {"apns-push-type": "background", "apns-priority": "5"}}, None),
        ({"headers": {"apns-expiration": "soon"}}, "400 BadExpirationDate"),
        ({"headers": {"apns-collapse-id": "c" * 65}}, "400 BadCollapseId"),
        ({"headers": {"apns-collapse-id": "c" * 64}}, None),
        ({"headers": {"apns-id": "not-a-uuid"}}, "400 BadMessageId"),
        ({"body": b""}, "400 PayloadEmpty"),
        ({"body": b'{"aps": {"alert": "' + b"x" * 4100 + b'"}}'}, "413 PayloadTooLarge"),
        ({"body": b'{"no-aps": 1}'}, "400 BadPayload"),
    ],
)
def test_apns_validation(kwargs: dict[str, object], expected: str | None) -> None:
    assert _apns(**kwargs) == expected  # type: ignore[arg-type]


def test_apns_payload_limit_is_exactly_4096_bytes() -> None:
    base = b'{"aps":{"alert":""}}'
    fits = base.replace(b'""', b'"' + b"x" * (4096 - len(base)) + b'"')
    assert len(fits) == 4096
    assert _apns(body=fits) is None
    assert _apns(body=fits[:-2] + b'x"}}') == "413 PayloadTooLarge"
