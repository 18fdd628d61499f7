"""A worker's providers hear the blocks any worker writes, and stop listening with them."""

from __future__ import annotations

from pathlib import Path

from wavecast_tools.fakes.fcm import write_service_account

from app.delivery.sender import _SharedBlock
from app.runtime import Runtime
from app.settings import ProviderMode
from tests.support import feed_connections, sender_deps, wait_for
from workers.providers import real_providers


async def test_the_block_feed_reaches_the_provider_the_sender_blocks_and_ends_with_it(
    db: Runtime, tmp_path: Path
) -> None:
    account = tmp_path / "service-account.json"
    # Never used: nothing is sent here.
    write_service_account(account, project_id="wavecast-feed", token_uri="http://127.0.0.1:1/t")
    settings = db.settings.model_copy(
        update={"provider": ProviderMode.real, "fcm_credentials": account}
    )
    providers = real_providers(settings)
    fcm = providers.by_platform["android"]
    assert fcm.blocks is not None
    deps = await sender_deps(db)
    try:
        providers.listen(db.redis, deps.control.throttle)
        await wait_for(lambda: feed_connections(db), within=5)
        # As the sender writes a Retry-After another worker's call got.
        await _SharedBlock(deps, "fcm").block(3)

        async def held() -> bool:
            return fcm.blocks is not None and fcm.blocks.remaining() > 2.5

        await wait_for(held, within=1, interval=0.01)
    finally:
        await providers.aclose()

    async def gone() -> bool:
        return not await feed_connections(db)

    await wait_for(gone, within=2)
