"""Stable buckets for devices and per-campaign rotations of the bucket space.

A campaign sends to its audience in ascending ``(order_key, device_id)`` order, where
``order_key = (device_bucket - campaign_rotation) mod 2**32``. Every wave is a prefix of that
order, so a device in an earlier wave is in every later one, and because each campaign rotates
the space by its own amount, different campaigns start from different devices.

Stability contract: ``device_bucket`` and ``campaign_rotation`` are persisted (the device table
stores the bucket) and decide who was in which wave of campaigns that already ran. Their
definitions must never change: no other hash, no other byte order, no other prefix. Changing
them silently reshuffles the membership of every campaign still in flight.

The database computes the same order key. ``ORDER_KEY_SQL_TEMPLATE`` is the SQL spelling; it
stays non-negative on both PostgreSQL and SQLite because ``bucket`` and ``rotation`` are both in
``[0, 2**32)``, so the sum is in ``[1, 2**33)`` and SQL's ``%`` (which keeps the sign of the
dividend) agrees with Python's ``%``. Both operands must be BIGINT: 2**32 does not fit in a
32-bit integer column.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

BUCKET_SPACE: Final = 2**32

#: SQL for :func:`order_key` over BIGINT operands, e.g.
#: ``ORDER_KEY_SQL_TEMPLATE.format(bucket="device.bucket", rotation=":rotation")``.
#: Only ever substitute column names and bind-parameter placeholders, never values.
ORDER_KEY_SQL_TEMPLATE: Final = "(({bucket}) + (4294967296 - ({rotation}))) % 4294967296"

_ROTATION_PREFIX: Final = b"rotation:"


def _first_32_bits(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big")


def device_bucket(device_id: uuid.UUID) -> int:
    """Return the device's bucket in ``[0, BUCKET_SPACE)``.

    Defined as the first 4 bytes, big-endian, of ``sha256(device_id.bytes)``. Stable forever
    (see the module docstring); depends only on the UUID's 16 bytes, not on its spelling.
    """
    return _first_32_bits(device_id.bytes)


def device_bucket_of_bytes(device_id: bytes) -> int:
    """``device_bucket`` of the UUID whose 16 bytes these are (the bulk import's spelling)."""
    return _first_32_bits(device_id)


def campaign_rotation(campaign_id: uuid.UUID) -> int:
    """Return the campaign's rotation of the bucket space, in ``[0, BUCKET_SPACE)``.

    Defined as the first 4 bytes, big-endian, of ``sha256(b"rotation:" + campaign_id.bytes)``.
    The prefix keeps rotations independent of device buckets even if a campaign and a device
    ever shared an id. Stable forever (see the module docstring).
    """
    return _first_32_bits(_ROTATION_PREFIX + campaign_id.bytes)


def order_key(bucket: int, rotation: int) -> int:
    """Return ``(bucket - rotation) mod 2**32``: the device's position key within a campaign.

    Ties (two devices with the same bucket) are broken by device id, so the full send order is
    ascending ``(order_key, device_id)``. For a fixed rotation this is a bijection of the bucket
    space, so rotating never merges or drops devices.

    Equivalently, ascending order key is ascending ``(bucket < rotation, bucket)``: the devices
    at or after the rotation point first, then the wrapped-around rest. A query can therefore
    read the order as two range scans of an index on ``bucket`` instead of sorting on the
    expression.

    Raises ``ValueError`` if either argument is outside ``[0, BUCKET_SPACE)``: outside that
    range ``ORDER_KEY_SQL_TEMPLATE`` would no longer agree with this function.
    """
    if not 0 <= bucket < BUCKET_SPACE:
        raise ValueError(f"bucket {bucket} is outside [0, 2**32)")
    if not 0 <= rotation < BUCKET_SPACE:
        raise ValueError(f"rotation {rotation} is outside [0, 2**32)")
    return (bucket - rotation) % BUCKET_SPACE
