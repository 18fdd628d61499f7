"""Which provider sends which message, built once per worker process."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.delivery.providers.base import Message, Provider
from app.delivery.providers.sandbox import SandboxProvider
from app.runtime import Runtime
from app.settings import ProviderMode, Settings


@dataclass
class ProviderSet:
    sandbox: Provider | None = None
    by_platform: dict[str, Provider] = field(default_factory=dict)

    def route(self, message: Message) -> Provider:
        if self.sandbox is not None:
            return self.sandbox
        return self.by_platform[message.platform]

    async def aclose(self) -> None:
        for provider in {
            id(p): p for p in [self.sandbox, *self.by_platform.values()] if p
        }.values():
            await provider.aclose()


async def build_providers(settings: Settings, runtime: Runtime, worker_id: str) -> ProviderSet:
    if settings.provider is ProviderMode.sandbox:
        return ProviderSet(sandbox=SandboxProvider(runtime.sessionmaker, worker_id))
    raise RuntimeError(
        "WAVECAST_PROVIDER=real needs the FCM and APNs providers, which this build does not have"
    )
