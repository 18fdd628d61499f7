"""Which provider sends which message, built once per worker process."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from app.control.block_feed import BlockFeed
from app.control.plane import provider_scope
from app.control.throttle import Throttle
from app.delivery.providers.base import Batch, Message, Provider, ResultKind, SendResult
from app.delivery.providers.sandbox import SandboxProvider
from app.runtime import Runtime
from app.settings import ProviderMode, Settings


class Unconfigured(Provider):
    """Stands in for a provider the deployment has no credentials for: its messages halt the
    campaign (a misconfiguration), they are never dropped or guessed elsewhere."""

    def __init__(self, name: str, setting: str) -> None:
        self.name = name
        self._setting = setting

    async def send(self, batch: Batch) -> list[SendResult]:
        return [
            SendResult(
                m.delivery_id,
                ResultKind.halt,
                error_code="provider_not_configured",
                detail=f"{self.name} is not configured (set {self._setting})",
            )
            for m in batch.messages
        ]


@dataclass
class ProviderSet:
    sandbox: Provider | None = None
    by_platform: dict[str, Provider] = field(default_factory=dict)
    feed: BlockFeed | None = None

    def route(self, message: Message) -> Provider:
        if self.sandbox is not None:
            return self.sandbox
        return self.by_platform[message.platform]

    @property
    def all(self) -> list[Provider]:
        providers = [self.sandbox, *self.by_platform.values()]
        return list({id(p): p for p in providers if p is not None}.values())

    @property
    def payload_seconds(self) -> float:
        return sum(p.payload_seconds for p in self.all)

    def listen(self, redis: Redis, throttle: Throttle) -> None:
        """Start the block feed into these providers' local blocks. It stops in `aclose`, so
        it ends with the providers it writes to, however the worker stops."""
        blocks = {provider_scope(p.name): p.blocks for p in self.all if p.blocks is not None}
        self.feed = BlockFeed(redis, throttle, blocks)
        self.feed.start()

    async def aclose(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        for provider in self.all:
            await provider.aclose()


def real_providers(settings: Settings) -> ProviderSet:
    # Imported here: the client libraries are heavy, and a sandbox worker never needs them.
    from app.delivery.providers.apns import ApnsCredentials, ApnsProvider
    from app.delivery.providers.fcm import FcmProvider

    fcm: Provider = Unconfigured("fcm", "WAVECAST_FCM_CREDENTIALS")
    if settings.fcm_credentials:
        fcm = FcmProvider(str(settings.fcm_credentials), endpoint=settings.fcm_endpoint)
    apns: Provider = Unconfigured(
        "apns",
        "WAVECAST_APNS_KEY, WAVECAST_APNS_KEY_ID, WAVECAST_APNS_TEAM_ID, WAVECAST_APNS_TOPIC",
    )
    if settings.apns_key and settings.apns_key_id and settings.apns_team_id and settings.apns_topic:
        apns = ApnsProvider(
            ApnsCredentials(
                str(settings.apns_key),
                settings.apns_key_id,
                settings.apns_team_id,
                settings.apns_topic,
            ),
            sandbox_url=settings.apns_sandbox_url,
            production_url=settings.apns_production_url,
            ca_file=str(settings.apns_ca_file) if settings.apns_ca_file else None,
        )
    return ProviderSet(by_platform={"android": fcm, "ios": apns})


async def build_providers(settings: Settings, runtime: Runtime, worker_id: str) -> ProviderSet:
    if settings.provider is ProviderMode.sandbox:
        return ProviderSet(sandbox=SandboxProvider(runtime.sessionmaker, worker_id))
    return real_providers(settings)
