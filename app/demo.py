"""Realistic fake devices for demos and benchmarks."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from faker import Faker

from app.db.types import utcnow
from app.devices import service as devices_service
from app.devices.models import ApnsEnvironment, Platform
from app.devices.schemas import DeviceRegistration

# (locale, time zone, weight): a European bank's customer base.
_MARKETS = [
    ("pl-PL", "Europe/Warsaw", 40),
    ("en-GB", "Europe/London", 12),
    ("de-DE", "Europe/Berlin", 12),
    ("uk-UA", "Europe/Kyiv", 8),
    ("cs-CZ", "Europe/Prague", 6),
    ("fr-FR", "Europe/Paris", 6),
    ("es-ES", "Europe/Madrid", 5),
    ("it-IT", "Europe/Rome", 5),
    ("en-US", "America/New_York", 6),
]
_VERSIONS = ["5.9.2", "5.10.0", "5.10.1", "5.11.0", "5.12.0", "5.12.1", "6.0.0"]
_TAGS = ["premium", "business", "student", "mortgage", "savings", "cards", "investor", "new"]
_SEGMENTS = ["retail", "private", "sme", "corporate"]


def fake_registrations(count: int, *, seed: int | None = None) -> Iterator[DeviceRegistration]:
    rng = random.Random(seed)
    faker = Faker()
    if seed is not None:
        faker.seed_instance(seed)
    cities = [faker.city() for _ in range(200)]
    markets = [m for m in _MARKETS for _ in range(m[2])]
    for _ in range(count):
        locale, zone, _weight = rng.choice(markets)
        platform = Platform.ios if rng.random() < 0.45 else Platform.android
        if platform is Platform.ios:
            token = secrets.token_hex(32)
            # Most iOS installs come from the App Store; TestFlight and debug builds use sandbox.
            environment = (
                ApnsEnvironment.sandbox if rng.random() < 0.03 else ApnsEnvironment.production
            )
        else:
            token = f"{secrets.token_urlsafe(16)}:APA91b{secrets.token_urlsafe(100)}"
            environment = None
        attributes: dict[str, Any] = {
            "segment": rng.choice(_SEGMENTS),
            "city": rng.choice(cities),
            "age": rng.randint(18, 90),
            "marketing_consent": rng.random() < 0.8,
        }
        yield DeviceRegistration(
            token=token,
            platform=platform,
            user_id=f"cust-{rng.randrange(10**9):09d}",
            locale=locale,
            timezone=zone,
            app_version=rng.choice(_VERSIONS),
            tags=rng.sample(_TAGS, k=rng.randint(0, 3)),
            attributes=attributes,
            apns_environment=environment,
        )


def fake_device_rows(count: int, *, seed: int | None = None) -> Iterator[dict[str, Any]]:
    """Rows ready for the device upsert, with last-seen times spread over recent weeks."""
    rng = random.Random(seed)
    now = utcnow()
    for registration in fake_registrations(count, seed=seed):
        row = devices_service.registration_row(registration)
        row["last_seen_at"] = now - timedelta(days=rng.expovariate(1 / 10))
        yield row
