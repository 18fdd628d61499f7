from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.checks.local_server import LocalServer, local_server


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with local_server() as s:
        yield s
