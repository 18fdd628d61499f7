"""A lease shorter than the longest a batch can take is refused at start-up: a slow batch's
rows would be reclaimed and sent again by another worker while its answers still come."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import LEASE_MARGIN_SECONDS, Settings


def test_a_lease_shorter_than_a_batch_is_refused_naming_both_variables() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(lease_seconds=20, provider_timeout_seconds=30)  # type: ignore[call-arg]
    message = str(refused.value)
    assert "WAVECAST_LEASE_SECONDS=20" in message
    assert "WAVECAST_PROVIDER_TIMEOUT_SECONDS=30" in message


@pytest.mark.parametrize("timeout", [3.0, 30.0, 58.0])
def test_a_lease_that_outlasts_a_batch_is_accepted(timeout: float) -> None:
    lease = int(timeout + LEASE_MARGIN_SECONDS)
    settings = Settings(lease_seconds=lease, provider_timeout_seconds=timeout)  # type: ignore[call-arg]
    assert settings.lease_seconds >= settings.provider_timeout_seconds + LEASE_MARGIN_SECONDS


def test_the_defaults_hold_the_rule() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.lease_seconds >= settings.provider_timeout_seconds + LEASE_MARGIN_SECONDS
