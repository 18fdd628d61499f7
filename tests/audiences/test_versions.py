from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.audiences.versions import version_key

parts = st.lists(st.integers(min_value=0, max_value=999_999), min_size=1, max_size=4)
suffixes = st.sampled_from(["", "-beta", "-rc.1", "+build.7", "-alpha-2", "+x.y"])


def _spell(numbers: list[int]) -> str:
    return ".".join(str(n) for n in numbers)


def _padded(numbers: list[int]) -> tuple[int, ...]:
    return tuple(numbers + [0] * (4 - len(numbers)))


@pytest.mark.parametrize(
    ("version", "key"),
    [
        ("5", "000005.000000.000000.000000"),
        ("5.12.1", "000005.000012.000001.000000"),
        ("5.12.1.300", "000005.000012.000001.000300"),
        ("05.012", "000005.000012.000000.000000"),
        ("999999.0.0.999999", "999999.000000.000000.999999"),
        ("1.0.0-beta", "000001.000000.000000.000000"),
        ("1.0.0+build.5", "000001.000000.000000.000000"),
        ("0" * 5000 + "7", "000007.000000.000000.000000"),
    ],
)
def test_key_of_a_version(version: str, key: str) -> None:
    assert version_key(version) == key


@pytest.mark.parametrize(
    "version",
    [
        "",
        "v1.2",
        "1.",
        ".1",
        "1..2",
        "1.2.3.4.5",
        "1000000",
        "1.2.3-",
        "1.2 ",
        " 1.2",
        "1.2-beta gamma",
        "١.٢",  # Arabic-Indic digits: int() would take them, the sort key must not
        "1,2",
        "latest",
    ],
)
def test_not_a_version_has_no_key(version: str) -> None:
    assert version_key(version) is None


def test_prerelease_compares_equal_to_its_release() -> None:
    # Documented: the suffix is dropped, so a pre-release counts as the release it leads to.
    assert version_key("1.0.0-beta") == version_key("1.0.0") == version_key("1")


def test_missing_parts_are_zero() -> None:
    assert version_key("5.12") == version_key("5.12.0") == version_key("5.12.0.0")


@given(parts, parts, suffixes, suffixes)
def test_key_order_is_numeric_order(
    left: list[int], right: list[int], left_suffix: str, right_suffix: str
) -> None:
    left_key = version_key(_spell(left) + left_suffix)
    right_key = version_key(_spell(right) + right_suffix)
    assert left_key is not None
    assert right_key is not None
    assert (left_key < right_key) == (_padded(left) < _padded(right))
    assert (left_key == right_key) == (_padded(left) == _padded(right))


@given(parts)
def test_every_key_has_the_same_shape(numbers: list[int]) -> None:
    key = version_key(_spell(numbers))
    assert key is not None
    assert len(key) == 27
    assert [int(part) for part in key.split(".")] == list(_padded(numbers))


@given(st.text(max_size=40))
def test_any_text_gives_a_key_or_none(text: str) -> None:
    key = version_key(text)
    assert key is None or len(key) == 27
