"""The import's fast check agrees with the DeviceRegistration model.

Soundness: whenever the fast check accepts a line, the model accepts it too and produces the
same values. Coverage: the rows real imports carry (ASCII tokens, tags and versions, bundled
time zones) are accepted by the fast check, so they never pay for the model.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.devices import lean
from app.devices.schemas import DeviceRegistration

_ZONES = ["Europe/Warsaw", "UTC", "America/New_York", "Asia/Kolkata", "Etc/GMT+5"]
_ASCII = st.characters(min_codepoint=0, max_codepoint=127)
_PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_ALNUM = st.sampled_from("abcXYZ019")

_anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

valid_tokens = st.text(_PRINTABLE, min_size=1, max_size=60)
valid_locales = st.builds(
    lambda lang, subtags: lang + "".join(sep + tag for sep, tag in subtags),
    st.text(st.sampled_from("abPLde"), min_size=2, max_size=3),
    st.lists(st.tuples(st.sampled_from("-_"), st.text(_ALNUM, min_size=2, max_size=8)), max_size=3),
)
valid_versions = st.builds(
    lambda parts, suffix: ".".join(str(p) for p in parts) + suffix,
    st.lists(st.integers(0, 10**7), min_size=1, max_size=4),
    st.one_of(
        st.just(""), st.text(st.sampled_from("ab.-09"), min_size=1, max_size=5).map("-".__add__)
    ),
)
valid_tags = st.lists(
    st.builds(
        lambda pad, tag, end: pad + tag + end,
        st.text(st.sampled_from(" \t\n"), max_size=2),
        st.text(_PRINTABLE, min_size=1, max_size=64),
        st.text(st.sampled_from(" \r"), max_size=2),
    ),
    max_size=64,
)
# A number an attribute may hold: inside the signed 64-bit range (beyond it, integers and
# floats are refused: `app.devices.schemas.attribute_value_problem`); the wrong shapes below
# (`_anything`) bring the numbers beyond it.
attribute_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(-(2.0**63), 2.0**63, exclude_min=True, exclude_max=True),
    st.text(max_size=20),
)
valid_attributes = st.dictionaries(
    st.text(st.sampled_from("ab_.-Z9"), min_size=1, max_size=64), attribute_values, max_size=64
)


def _or_wrong(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid shape, sometimes anything at all."""
    return st.one_of(valid, valid, valid, _anything)


def _platform_and_environment() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.fixed_dictionaries(
            {"platform": st.just("android")}, optional={"apns_environment": st.none()}
        ),
        st.fixed_dictionaries(
            {
                "platform": st.just("ios"),
                "apns_environment": st.sampled_from(["sandbox", "production"]),
            }
        ),
    )


valid_rows = st.builds(
    lambda base, extra: {**base, **extra},
    st.fixed_dictionaries(
        {"token": valid_tokens},
        optional={
            "user_id": st.one_of(st.none(), st.text(min_size=1, max_size=256)),
            "locale": st.one_of(st.none(), valid_locales),
            "timezone": st.one_of(st.none(), st.sampled_from(_ZONES)),
            "app_version": st.one_of(st.none(), valid_versions.filter(lambda v: len(v) <= 64)),
            "tags": valid_tags,
            "attributes": valid_attributes,
        },
    ),
    _platform_and_environment(),
)

any_rows = st.fixed_dictionaries(
    {},
    optional={
        "token": _or_wrong(st.one_of(valid_tokens, st.text(_ASCII, max_size=5))),
        "platform": st.one_of(st.sampled_from(["ios", "android", "windows", "IOS", ""]), _anything),
        "apns_environment": _or_wrong(st.sampled_from(["sandbox", "production", "dev"])),
        "user_id": _or_wrong(st.text(max_size=3)),
        "locale": _or_wrong(st.one_of(valid_locales, st.text(_ASCII, max_size=12))),
        "timezone": _or_wrong(st.sampled_from([*_ZONES, "Mars/Olympus", "europe/warsaw", ""])),
        "app_version": _or_wrong(
            st.one_of(valid_versions, st.text(st.sampled_from("0123.-+a٣"), max_size=8))
        ),
        "tags": _or_wrong(
            st.lists(
                st.one_of(st.text(max_size=4), st.text(_ASCII, max_size=4), _anything), max_size=4
            )
        ),
        "attributes": _or_wrong(
            st.dictionaries(st.text(max_size=4), st.one_of(attribute_values, _anything), max_size=3)
        ),
        "is_test_device": st.booleans(),
    },
)


def _dumps(row: dict[str, Any]) -> bytes:
    return json.dumps(row).encode()


def _model(raw: bytes) -> lean.Values | None:
    try:
        return lean.from_model(DeviceRegistration.model_validate_json(raw))
    except ValidationError:
        return None


def _assert_agrees(row: dict[str, Any]) -> lean.Values | None:
    raw = json.dumps(row).encode()
    fast = lean.parse(raw)
    model = _model(raw)
    if fast is not None:
        assert model == fast, (row, model, fast)
    return fast


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(any_rows)
def test_fast_check_never_accepts_what_the_model_refuses(row: dict[str, Any]) -> None:
    _assert_agrees(row)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(valid_rows)
def test_fast_check_accepts_ordinary_rows_with_the_models_values(row: dict[str, Any]) -> None:
    assert _model(_dumps(row)) is not None, row
    assert _assert_agrees(row) is not None, row


@given(valid_rows, st.sampled_from(["token", "platform", "locale", "tags", "attributes"]))
def test_a_row_with_one_broken_field_is_left_to_the_model(row: dict[str, Any], field: str) -> None:
    broken = {**row, field: {"token": 7, "platform": "windows"}.get(field, 12)}
    assert lean.parse(_dumps(broken)) is None
    assert _model(_dumps(broken)) is None


def test_control_characters_python_would_strip_are_kept_as_the_model_keeps_them() -> None:
    row = {"token": "t", "platform": "android", "tags": [" \x1cvip\t"]}
    expected = ("t", "android", None, None, None, None, ["\x1cvip"], {}, None)
    assert _model(_dumps(row)) == expected
    assert _assert_agrees(row) == expected


def test_a_repeated_key_means_the_same_to_both() -> None:
    raw = b'{"token": "a", "platform": "ios", "token": "b", "apns_environment": "sandbox"}'
    fast = lean.parse(raw)
    assert fast is not None
    assert fast == _model(raw)
    assert fast[0] == "b"
