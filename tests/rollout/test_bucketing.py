import hashlib
import random
import sqlite3
import uuid
from contextlib import closing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.rollout.bucketing import (
    BUCKET_SPACE,
    ORDER_KEY_SQL_TEMPLATE,
    campaign_rotation,
    device_bucket,
    order_key,
)

buckets = st.integers(min_value=0, max_value=BUCKET_SPACE - 1)
edge_buckets = st.sampled_from([0, 1, BUCKET_SPACE // 2, BUCKET_SPACE - 2, BUCKET_SPACE - 1])
any_bucket = buckets | edge_buckets

ZERO_ID = uuid.UUID("00000000-0000-0000-0000-000000000000")
DNS_NAMESPACE_ID = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")


def _sha256_prefix(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big")


def test_bucket_space_is_32_bits() -> None:
    assert BUCKET_SPACE == 4294967296


# These literals are the stability contract: buckets are stored and decide wave membership of
# campaigns already running. If this test fails, the hash changed; change it back.
@pytest.mark.parametrize(
    ("device_id", "expected"),
    [(ZERO_ID, 927402239), (DNS_NAMESPACE_ID, 1320958969)],
)
def test_device_bucket_is_pinned(device_id: uuid.UUID, expected: int) -> None:
    assert _sha256_prefix(device_id.bytes) == expected
    assert device_bucket(device_id) == expected


@pytest.mark.parametrize(
    ("campaign_id", "expected"),
    [(ZERO_ID, 244199279), (DNS_NAMESPACE_ID, 2994973563)],
)
def test_campaign_rotation_is_pinned(campaign_id: uuid.UUID, expected: int) -> None:
    assert _sha256_prefix(b"rotation:" + campaign_id.bytes) == expected
    assert campaign_rotation(campaign_id) == expected


@given(st.uuids())
def test_bucket_and_rotation_are_in_range_and_match_definition(value: uuid.UUID) -> None:
    assert 0 <= device_bucket(value) < BUCKET_SPACE
    assert 0 <= campaign_rotation(value) < BUCKET_SPACE
    assert device_bucket(value) == _sha256_prefix(value.bytes)
    assert campaign_rotation(value) == _sha256_prefix(b"rotation:" + value.bytes)


@given(st.uuids())
def test_bucket_depends_on_bytes_not_spelling(value: uuid.UUID) -> None:
    respelled = [
        uuid.UUID(str(value).upper()),
        uuid.UUID(value.hex),
        uuid.UUID(bytes=value.bytes),
        uuid.UUID(int=value.int),
        uuid.UUID("{" + str(value) + "}"),
    ]
    for other in respelled:
        assert device_bucket(other) == device_bucket(value)
        assert campaign_rotation(other) == campaign_rotation(value)


def test_rotation_is_not_the_bucket_of_the_same_id() -> None:
    assert campaign_rotation(ZERO_ID) != device_bucket(ZERO_ID)
    assert campaign_rotation(DNS_NAMESPACE_ID) != device_bucket(DNS_NAMESPACE_ID)


@given(any_bucket, any_bucket)
def test_order_key_is_bucket_minus_rotation_mod_space(bucket: int, rotation: int) -> None:
    key = order_key(bucket, rotation)
    assert 0 <= key < BUCKET_SPACE
    # Inverse: adding the rotation back recovers the bucket, so the map is a bijection.
    assert (key + rotation) % BUCKET_SPACE == bucket
    expected = bucket - rotation if bucket >= rotation else bucket - rotation + BUCKET_SPACE
    assert key == expected


@given(any_bucket)
def test_zero_rotation_is_identity_and_own_rotation_is_first(bucket: int) -> None:
    assert order_key(bucket, 0) == bucket
    assert order_key(bucket, bucket) == 0


@given(any_bucket, any_bucket, any_bucket)
def test_order_key_preserves_cyclic_order(a: int, b: int, rotation: int) -> None:
    # Rotating only moves the starting point: distances around the circle are unchanged.
    assert (order_key(b, rotation) - order_key(a, rotation)) % BUCKET_SPACE == (
        b - a
    ) % BUCKET_SPACE


@given(st.lists(any_bucket, max_size=50), any_bucket)
def test_order_key_order_is_two_ascending_bucket_ranges(
    bucket_list: list[int], rotation: int
) -> None:
    by_key = sorted(bucket_list, key=lambda b: order_key(b, rotation))
    by_ranges = sorted(bucket_list, key=lambda b: (b < rotation, b))
    assert by_key == by_ranges


@pytest.mark.parametrize(
    ("bucket", "rotation"),
    [(-1, 0), (BUCKET_SPACE, 0), (0, -1), (0, BUCKET_SPACE), (2**64, 5)],
)
def test_order_key_rejects_values_outside_the_space(bucket: int, rotation: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        order_key(bucket, rotation)


@given(st.lists(st.tuples(any_bucket, any_bucket), min_size=1, max_size=50))
def test_sql_template_agrees_with_order_key(pairs: list[tuple[int, int]]) -> None:
    expression = ORDER_KEY_SQL_TEMPLATE.format(bucket="bucket", rotation=":rotation")
    with closing(sqlite3.connect(":memory:")) as connection:
        for bucket, rotation in pairs:
            (value,) = connection.execute(
                f"SELECT {expression} FROM (SELECT :bucket AS bucket)",
                {"bucket": bucket, "rotation": rotation},
            ).fetchone()
            assert value == order_key(bucket, rotation)


def _chi_square(values: list[int], bins: int) -> float:
    shift = 32 - (bins.bit_length() - 1)
    counts = [0] * bins
    for value in values:
        counts[value >> shift] += 1
    expected = len(values) / bins
    return sum((count - expected) ** 2 / expected for count in counts)


# 15 degrees of freedom: P(chi2 > 37.70) = 0.001. The seed is fixed, so this cannot flake; a
# biased hash would blow far past the bound.
CHI_SQUARE_15_DF_P001 = 37.70


def test_device_buckets_are_roughly_uniform() -> None:
    rng = random.Random(20240611)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(100_000)]
    assert _chi_square([device_bucket(i) for i in ids], 16) < CHI_SQUARE_15_DF_P001


def test_device_buckets_of_sequential_ids_are_roughly_uniform() -> None:
    # Ids minted by a counter differ in a few low bits; the hash must still spread them.
    ids = [uuid.UUID(int=n) for n in range(50_000)]
    assert _chi_square([device_bucket(i) for i in ids], 16) < CHI_SQUARE_15_DF_P001


def test_campaign_rotations_are_roughly_uniform() -> None:
    rng = random.Random(7)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(20_000)]
    assert _chi_square([campaign_rotation(i) for i in ids], 16) < CHI_SQUARE_15_DF_P001
