"""API key format and hashing (pure).

A key looks like `wck_<prefix>_<secret>`: the prefix is shown in listings and logs and finds
the row; the secret is 256 bits from the OS's CSPRNG. Only SHA-256(pepper + key) is stored.
A fast hash is right here because the key is high-entropy: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_MARK = "wck"


@dataclass(frozen=True)
class NewKey:
    prefix: str
    raw: str


def generate() -> NewKey:
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(prefix=prefix, raw=f"{KEY_MARK}_{prefix}_{secret}")


def split(raw: str) -> str | None:
    """The prefix of a well-formed key, or None."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_MARK or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def digest(raw: str, pepper: str) -> str:
    return hashlib.sha256(f"{pepper}{raw}".encode()).hexdigest()


def matches(raw: str, stored_digest: str, pepper: str) -> bool:
    return hmac.compare_digest(digest(raw, pepper), stored_digest)
