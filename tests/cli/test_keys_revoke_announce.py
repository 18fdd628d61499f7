"""`wavecast keys revoke` tells every API process, as `DELETE /v1/keys/{id}` does: once the
revocation has committed, it announces it on Redis (app.auth.key_cache), and the processes
forget the keys they remembered."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from sqlalchemy import select

from app.auth.key_cache import CHANNEL
from app.auth.models import ApiKey, Scope
from app.runtime import Runtime
from tests.conftest import KeyMaker


async def test_a_revocation_from_the_command_line_is_announced(
    db: Runtime, make_key: KeyMaker
) -> None:
    raw = await make_key(Scope.campaigns_read, name="to revoke")
    prefix = raw.split("_")[1]
    async with db.sessionmaker() as session:
        key_id = (
            await session.execute(select(ApiKey.id).where(ApiKey.prefix == prefix))  # type: ignore[arg-type]
        ).scalar_one()
    pubsub = db.redis.pubsub()
    await pubsub.subscribe(CHANNEL)
    try:
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        env = {
            **os.environ,
            "WAVECAST_DATABASE_URL": db.settings.effective_database_url,
            "WAVECAST_REDIS_URL": db.settings.redis_url,
            "WAVECAST_JSON_LOGS": "false",
        }
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "app.cli", "keys", "revoke", str(key_id), "--reason", "left"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "revoked" in done.stdout
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
        assert message is not None and message["channel"] in (CHANNEL, CHANNEL.encode())
    finally:
        await pubsub.aclose()
