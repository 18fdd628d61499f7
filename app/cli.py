"""The `wavecast` command."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from pydantic import ValidationError

from app.settings import Settings

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from app.audit.chain import Head
    from app.auth.models import ApiKey
    from app.auth.service import CreatedKey
    from app.control.plane import Control
    from app.errors import Problem

T = TypeVar("T")
log = logging.getLogger("wavecast.cli")


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        sys.exit(f"wavecast: refusing to start: {reasons}")


def _configure_logging(settings: Settings) -> None:
    from app.logging import configure

    configure(settings.log_level, json_logs=settings.json_logs)


# ---------------------------------------------------------------- migrate
def cmd_migrate(args: argparse.Namespace) -> None:
    from app.db import migrate

    settings = _settings()
    _prepare_data_dir(settings)
    migrate.upgrade(settings.effective_database_url)
    if args.check:
        migrate.check(settings.effective_database_url)
    print(f"database at head: {_redact(settings.effective_database_url)}")


def _prepare_data_dir(settings: Settings) -> None:
    if settings.uses_embedded_database:
        settings.data_dir.mkdir(parents=True, exist_ok=True)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


# ---------------------------------------------------------------- audit
def cmd_audit_verify(args: argparse.Namespace) -> None:
    from app.audit.service import verify_chain
    from app.db.session import create_engine, create_sessionmaker

    settings = _settings()
    expected: Head | None = args.expect_head

    async def run() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            verdict = await verify_chain(create_sessionmaker(engine), expected_head=expected)
        finally:
            await engine.dispose()
        if verdict.broken is not None:
            sys.exit(
                f"audit log BROKEN at {verdict.broken.describe()} "
                f"({verdict.checked} events before it are intact)"
            )
        if verdict.cut_short is not None:
            sys.exit(f"audit log CUT SHORT: {verdict.cut_short}")
        reached = "" if expected is None else f"; reaches the expected head {expected}"
        print(
            f"audit log intact: {verdict.checked} events; head sequence "
            f"{verdict.head_sequence}, hash {verdict.head_hash}{reached}"
        )
        if verdict.head_sequence:
            print(
                "keep this head outside the database and check against it later: "
                f"wavecast audit verify --expect-head {verdict.head_sequence}:{verdict.head_hash}"
            )

    asyncio.run(run())


def _expected_head(value: str) -> Head:
    from app.audit.chain import Head

    try:
        return Head.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _aware_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO-8601 timestamp with a time zone (e.g. 2026-12-01T00:00:00Z)"
        )
    return moment


def cmd_audit_export(args: argparse.Namespace) -> None:
    from app.audit import export, service
    from app.db.session import create_engine, create_sessionmaker

    problem = export.range_problem(args.since, args.until)
    if problem is not None:
        print(f"wavecast audit export: argument --to: {problem} (--from)", file=sys.stderr)
        sys.exit(2)
    settings = _settings()

    async def run(out: BinaryIO) -> export.Plan:
        engine = create_engine(settings.effective_database_url)
        try:
            sessionmaker = create_sessionmaker(engine)
            plan = await service.plan_export(sessionmaker, since=args.since, until=args.until)
            async for chunk in service.export_lines(sessionmaker, plan):
                out.write(chunk)
            out.flush()
            return plan
        finally:
            await engine.dispose()

    if args.output is None:
        plan = asyncio.run(run(sys.stdout.buffer))
    else:
        # Written beside the target and renamed once complete: a failed export leaves no
        # file that looks like one.
        target = Path(args.output)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with partial.open("wb") as out:
                plan = asyncio.run(run(out))
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    span = (
        "no events"
        if plan.first_sequence is None
        else f"{plan.count} events, sequences {plan.first_sequence}..{plan.last_sequence}"
    )
    print(
        f"audit export: {span}; chain head at export: sequence {plan.head.sequence}, "
        f"hash {plan.head.hash}",
        file=sys.stderr,
    )


def cmd_audit_verify_export(args: argparse.Namespace) -> None:
    from app.audit.export_check import verify_export

    expected: Head | None = args.expect_head
    if args.file == "-":
        verdict = verify_export(sys.stdin.buffer, expected_head=expected)
    else:
        try:
            with Path(args.file).open("rb") as lines:
                verdict = verify_export(lines, expected_head=expected)
        except OSError as exc:
            sys.exit(f"wavecast audit verify-export: cannot read {args.file}: {exc.strerror}")
    if verdict.failure is not None:
        sys.exit(
            f"audit export BROKEN at {verdict.failure.describe()} "
            f"({verdict.checked} events before it are intact)"
        )
    found = verdict.head_line
    assert found is not None
    if verdict.last is None or verdict.starts_after is None:
        print(
            f"audit export intact: no events; chain head at export: sequence "
            f"{found.head.sequence}, hash {found.head.hash}"
        )
        return
    reached = "" if expected is None else f"; holds the expected head {expected}"
    print(
        f"audit export intact: {verdict.checked} events, sequences "
        f"{verdict.starts_after.sequence + 1}..{verdict.last.sequence}; last event hash "
        f"{verdict.last.hash}; chain head at export: sequence {found.head.sequence}, hash "
        f"{found.head.hash}{reached}"
    )
    if verdict.starts_after.sequence > 0:
        print(
            f"its first event chains from sequence {verdict.starts_after.sequence}, which "
            f"must carry hash {verdict.starts_after.hash}: check that against the export "
            "that holds it"
        )
    print(
        "verify the next export of this log against its last event: wavecast audit "
        f"verify-export FILE --expect-head {verdict.last.sequence}:{verdict.last.hash}"
    )


# ---------------------------------------------------------------- keys
async def _with_session(settings: Settings, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from app.db.session import create_engine, create_sessionmaker, unit_of_work

    engine = create_engine(settings.effective_database_url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            return await fn(session)
    finally:
        await engine.dispose()


def cmd_keys_create(args: argparse.Namespace) -> None:
    from app.auth import service
    from app.auth.models import Scope
    from app.auth.principal import cli_principal

    settings = _settings()
    try:
        scopes = [Scope(s) for s in args.scope]
    except ValueError as exc:
        sys.exit(f"wavecast: {exc}; scopes are: {', '.join(s.value for s in Scope)}")

    async def create(session: AsyncSession) -> CreatedKey:
        from app.people import service as people_service

        person = await people_service.find(session, args.person)
        if person is None:
            sys.exit(
                f"wavecast keys create: no person {args.person!r} (an id or an exact name); "
                "create one with `wavecast people create --name NAME --kind human|service`"
            )
        return await service.create_key(
            session, settings, cli_principal(), name=args.name, scopes=scopes, person_id=person.id
        )

    created = asyncio.run(_with_session(settings, create))
    print(
        json.dumps(
            {
                "id": str(created.key.id),
                "name": created.key.name,
                "person_id": str(created.key.person_id),
                "scopes": created.key.scopes,
                "key": created.raw,
                "note": "the key is shown only now; store it safely",
            },
            indent=2,
        )
    )


def cmd_keys_list(args: argparse.Namespace) -> None:
    from app.auth import service

    settings = _settings()

    async def listing(session: AsyncSession) -> Sequence[ApiKey]:
        return await service.list_keys(session, include_revoked=args.all)

    for key in asyncio.run(_with_session(settings, listing)):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        print(f"{key.id}  wck_{key.prefix}_…  {key.name:<24} {','.join(key.scopes):<40} {state}")


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    from app.auth import service
    from app.auth.key_cache import announce_change
    from app.auth.principal import cli_principal
    from app.errors import Problem
    from app.runtime import connect_redis

    settings = _settings()

    async def revoke(session: AsyncSession) -> ApiKey:
        return await service.revoke_key(
            session, cli_principal(), uuid.UUID(args.key_id), reason=args.reason
        )

    async def revoke_and_announce() -> ApiKey:
        key = await _with_session(settings, revoke)
        if settings.uses_embedded_redis:
            # `wavecast run`'s one API process rechecks its keys within the revocation bound.
            return key
        # Committed: every API process forgets the keys it remembered (app.auth.key_cache).
        redis = connect_redis(settings)
        try:
            await announce_change(redis)
        finally:
            await redis.aclose()
        return key

    try:
        key = asyncio.run(revoke_and_announce())
    except Problem as refused:
        sys.exit(f"wavecast keys revoke: {refused.detail}")
    print(f"revoked {key.id} (wck_{key.prefix}_…)")


# ---------------------------------------------------------------- people
def cmd_people_create(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from app.auth.principal import cli_principal
    from app.errors import Problem
    from app.people import service
    from app.people.schemas import PersonCreate, PersonOut

    settings = _settings()
    try:
        body = PersonCreate.model_validate(
            {
                "name": args.name,
                "kind": args.kind,
                "email": args.email,
                "slack_user_id": args.slack_user_id,
            }
        )
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        sys.exit(f"wavecast people create: {problems}")

    async def create(session: AsyncSession) -> PersonOut:
        return await service.view(session, await service.create(session, cli_principal(), body))

    try:
        person = asyncio.run(_with_session(settings, create))
    except Problem as refused:
        sys.exit(f"wavecast people create: {refused.detail}")
    print(person.model_dump_json(indent=2))


def cmd_people_list(args: argparse.Namespace) -> None:
    from app.people import service
    from app.people.schemas import PersonOut

    settings = _settings()

    async def listing(session: AsyncSession) -> list[PersonOut]:
        return await service.views(session, await service.list_people(session))

    for person in asyncio.run(_with_session(settings, listing)):
        slack = person.slack_user_id or "-"
        scopes = ",".join(person.scopes)
        print(f"{person.id}  {person.kind:<7}  {person.name:<32} {slack:<12} {scopes}")


# ---------------------------------------------------------------- devices
async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, 1 << 20):
            yield chunk


def cmd_devices_import(args: argparse.Namespace) -> None:
    from app.db.session import create_engine, create_sessionmaker
    from app.devices import importer

    path = Path(args.file)
    if not path.is_file():
        sys.exit(f"wavecast devices import: no such file: {path}")
    settings = _settings()

    async def run() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            result = await importer.import_stream(create_sessionmaker(engine), _file_chunks(path))
        finally:
            await engine.dispose()
        print(result.model_dump_json(indent=2))

    try:
        asyncio.run(run())
    except OSError as exc:
        sys.exit(f"wavecast devices import: cannot read {path}: {exc.strerror or exc}")


# ---------------------------------------------------------------- demo
async def seed_devices(settings: Settings, count: int, *, seed: int | None = None) -> int:
    from app.db.session import create_engine, create_sessionmaker, unit_of_work
    from app.demo import fake_device_rows
    from app.devices import service as devices_service

    engine = create_engine(settings.effective_database_url)
    sessionmaker = create_sessionmaker(engine)
    created = 0
    batch: list[dict[str, object]] = []
    try:
        for row in fake_device_rows(count, seed=seed):
            batch.append(row)
            if len(batch) >= 5000:
                async with unit_of_work(sessionmaker) as session:
                    created += (await devices_service.register_many(session, batch)).created
                batch = []
        if batch:
            async with unit_of_work(sessionmaker) as session:
                created += (await devices_service.register_many(session, batch)).created
    finally:
        await engine.dispose()
    return created


def cmd_demo_seed(args: argparse.Namespace) -> None:
    settings = _settings()
    if settings.is_production:
        sys.exit(
            "wavecast demo seed: refusing to add fake devices to a production deployment "
            f"(WAVECAST_ENV={settings.env.value})"
        )
    created = asyncio.run(seed_devices(settings, args.devices, seed=args.seed))
    print(f"seeded {created} demo devices")


# ---------------------------------------------------------------- operating campaigns
# The same commands the API and the form run (`app.campaigns.commands`), so a stop from here
# carries the same guarantee: once it answers, no provider request of what it stopped starts.
NOT_CONFIRMED_EXIT = 3


def _refusal(command: str, problem: Problem) -> SystemExit:
    """One line on stderr. A stop the database recorded but could not confirm (Redis
    unreachable, sends still draining) exits 3 and says so; any other refusal exits 1."""
    if problem.status == 503:
        print(
            f"wavecast {command}: NOT CONFIRMED ({problem.title}): {problem.detail}",
            file=sys.stderr,
        )
        return SystemExit(NOT_CONFIRMED_EXIT)
    return SystemExit(f"wavecast {command}: {problem.title}: {problem.detail}")


def _reason(command: str, text: str | None, *, required: bool) -> str | None:
    from app.campaigns.schemas import OptionalReason, Reason

    try:
        if required:
            return Reason(reason=text or "").reason
        return OptionalReason(reason=text).reason
    except ValidationError as exc:
        raise SystemExit(f"wavecast {command}: --reason: {exc.errors()[0]['msg']}") from None


def _campaign_id(command: str, text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise SystemExit(f"wavecast {command}: not a campaign id: {text!r}") from None


def _operate(command: str, fn: Callable[[AsyncSession, Control], Awaitable[T]]) -> T:
    """Run a command in one unit of work (the command commits it itself) with the control
    plane; a refusal becomes one line and a non-zero exit."""
    from app.control.plane import Control
    from app.runtime import connect_redis

    async def run(settings: Settings, session: AsyncSession) -> T:
        redis = connect_redis(settings)
        try:
            return await fn(session, Control(redis))
        finally:
            await redis.aclose()

    return _in_session(command, run)


def _read(command: str, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """A read: the database only, so it works while Redis is away."""

    async def run(_settings: Settings, session: AsyncSession) -> T:
        return await fn(session)

    return _in_session(command, run)


def _in_session(command: str, fn: Callable[[Settings, AsyncSession], Awaitable[T]]) -> T:
    from app.errors import Problem

    settings = _settings()
    _configure_logging(settings)  # every stop is one structured line, from here too

    async def session_run(session: AsyncSession) -> T:
        return await fn(settings, session)

    try:
        return asyncio.run(_with_session(settings, session_run))
    except Problem as problem:
        raise _refusal(command, problem) from None
    except RuntimeError as exc:  # no Redis configured: a stop cannot reach the workers
        raise SystemExit(f"wavecast {command}: {exc}") from None


def _when(stamp: object) -> str:
    return "-" if stamp is None else f"{stamp:%Y-%m-%d %H:%M:%S} UTC"


def cmd_switch_status(args: argparse.Namespace) -> None:
    from app.killswitch import service as switches
    from app.killswitch.models import KillSwitch

    async def read(session: AsyncSession) -> KillSwitch:
        return await switches.get_switch(session)

    switch = _read("kill-switch status", read)
    print(
        f"{'ENGAGED' if switch.engaged else 'released'}; by {switch.changed_by or '-'} "
        f"at {_when(switch.changed_at)}; reason: {switch.reason or '-'}"
    )


def cmd_switch_engage(args: argparse.Namespace) -> None:
    from app.auth.principal import cli_principal
    from app.campaigns import commands

    reason = _reason("kill-switch engage", args.reason, required=True) or ""

    async def engage(session: AsyncSession, control: Control) -> commands.Engaged:
        return await commands.engage_switch(session, control, cli_principal(), reason=reason)

    engaged = _operate("kill-switch engage", engage)
    print(
        f"kill switch ENGAGED by {engaged.switch.changed_by}: {engaged.switch.reason}; "
        f"{len(engaged.paused)} campaign(s) paused; no provider request starts any more"
    )


def cmd_switch_release(args: argparse.Namespace) -> None:
    from app.auth.principal import cli_principal
    from app.campaigns import commands
    from app.killswitch.models import KillSwitch

    reason = _reason("kill-switch release", args.reason, required=True) or ""

    async def release(session: AsyncSession, control: Control) -> KillSwitch:
        return await commands.release_switch(session, control, cli_principal(), reason=reason)

    switch = _operate("kill-switch release", release)
    print(
        f"kill switch released by {switch.changed_by}: {switch.reason}; "
        "campaigns stay paused until resumed one by one"
    )


def cmd_campaigns_list(args: argparse.Namespace) -> None:
    from app.campaigns import service
    from app.campaigns.schemas import CampaignSummary
    from app.campaigns.state import CampaignStatus

    try:
        status = CampaignStatus(args.status) if args.status else None
    except ValueError:
        sys.exit(
            f"wavecast campaigns list: no status {args.status!r}; one of: "
            + ", ".join(s.value for s in CampaignStatus)
        )

    async def listing(session: AsyncSession) -> list[CampaignSummary]:
        items, _cursor = await service.page_campaigns(
            session, limit=args.limit, cursor=None, status=status, kind=None
        )
        return items

    for item in _read("campaigns list", listing):
        wave = "-" if item.current_wave is None else f"{item.current_wave + 1}/{item.waves}"
        print(f"{item.id}  {item.status.value:<10} {item.kind.value:<5} wave {wave:<6} {item.name}")


def cmd_campaigns_show(args: argparse.Namespace) -> None:
    from app.campaigns import service
    from app.campaigns.schemas import CampaignOut

    campaign_id = _campaign_id("campaigns show", args.campaign_id)

    async def show(session: AsyncSession) -> CampaignOut:
        return await service.view(session, await service.get(session, campaign_id))

    print(_read("campaigns show", show).model_dump_json(indent=2))


def cmd_campaigns_act(args: argparse.Namespace) -> None:
    from app.auth.principal import cli_principal
    from app.campaigns import commands
    from app.campaigns.models import Campaign

    action: str = args.action
    command = f"campaigns {action}"
    campaign_id = _campaign_id(command, args.campaign_id)
    reason = _reason(command, args.reason, required=action == "kill")

    async def act(session: AsyncSession, control: Control) -> Campaign:
        principal = cli_principal()
        if action == "kill":
            return await commands.kill(
                session, control, principal, campaign_id, reason=reason or ""
            )
        if action == "pause":
            return await commands.pause(session, control, principal, campaign_id, reason=reason)
        return await commands.resume(session, control, principal, campaign_id, reason=reason)

    campaign = _operate(command, act)
    stopped = "; no provider request of it starts any more" if action != "resume" else ""
    print(f"campaign {campaign.id} is {campaign.status}{stopped}")


# ---------------------------------------------------------------- development tools
TOOLS_MISSING = (
    "wavecast {command}: the protocol fakes and the benchmarks are Wavecast's development "
    "tools, not part of this installation; install them with `pip install -e tools/` from "
    "the repository (`make install` does)"
)


def cmd_ledger_prune(args: argparse.Namespace) -> None:
    from app.auth.principal import cli_principal
    from app.db.session import create_engine, create_sessionmaker
    from app.db.types import utcnow
    from app.delivery import partitions, retention

    settings = _settings()
    _configure_logging(settings)
    days = args.days if args.days is not None else settings.ledger_retention_days
    if days is None:
        raise SystemExit(
            "wavecast ledger prune: no retention: set WAVECAST_LEDGER_RETENTION_DAYS or --days"
        )
    now = utcnow()
    before = retention.cutoff(now, days)

    def line(campaign_id: object, rows: int, events: int, rest: str) -> str:
        return f"{campaign_id}  {rows:>10} rows  {events:>10} events  {rest}"

    async def run() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            sessionmaker = create_sessionmaker(engine)
            if args.dry_run:
                async with sessionmaker() as session:
                    listed = await retention.prunable(session, before=before)
                    months = await retention.droppable_months(
                        session, now=now, pruning=[c.campaign_id for c in listed]
                    )
                print(f"would prune {len(listed)} campaigns that ended before {_when(before)}")
                for c in listed:
                    ended = f"{c.status} {_when(c.finished_at)}"
                    again = " (resumes an interrupted prune)" if c.resumed else ""
                    print(line(c.campaign_id, c.rows, c.events, f"{ended}  {c.name}{again}"))
                for month in months:
                    print(f"would drop the ledger partition {partitions.table_name(month)} whole")
                return
            done = await retention.prune(
                sessionmaker,
                cli_principal(),
                retention_days=days,
                now=now,
                on_pruned=lambda p: print(line(p.campaign_id, p.rows, p.events, "pruned")),
                on_dropped=lambda m: print(f"dropped ledger partition {partitions.table_name(m)}"),
            )
            print(f"pruned {len(done)} campaigns that ended before {_when(before)}")
        finally:
            await engine.dispose()

    asyncio.run(run())


def _positive_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"at least 1 day: {text!r}")
    return days


def _tools(command: str) -> None:
    """Exit with a one-line answer when the development tools are not installed."""
    try:
        importlib.import_module("wavecast_tools")
    except ModuleNotFoundError:
        sys.exit(TOOLS_MISSING.format(command=command))


def cmd_fake(args: argparse.Namespace) -> None:
    """Local servers that speak FCM's and APNs' protocols, for tests, benchmarks and demos."""
    _tools("fake")
    if args.kind == "fcm":
        from wavecast_tools.fakes.fcm import main as fake_main
    elif args.kind == "slack":
        from wavecast_tools.fakes.slack import main as fake_main
    else:
        from wavecast_tools.fakes.apns import main as fake_main
    sys.exit(fake_main(args.options))


# ---------------------------------------------------------------- benchmarks
def cmd_bench(args: argparse.Namespace) -> None:
    _tools("bench")
    from wavecast_tools.bench import SCENARIOS, environment, report

    if args.scenario != "all" and args.scenario not in SCENARIOS:
        sys.exit(
            f"wavecast bench: no scenario {args.scenario!r}; one of: all, {', '.join(SCENARIOS)}"
        )
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    modules = {name: importlib.import_module(SCENARIOS[name]) for name in names}
    options = {}
    for name, module in modules.items():
        parser = argparse.ArgumentParser(
            prog=f"wavecast bench {name}", description=module.DESCRIPTION
        )
        module.add_arguments(parser)
        # `all` runs every scenario with its defaults; one scenario takes its own options.
        options[name] = parser.parse_args(args.options if len(names) == 1 else [])
    figures: list[report.Figure] = []
    with environment.prepared(_settings()) as settings:
        for name, module in modules.items():
            figures += module.run_scenario(settings, options[name])
            if len(names) > 1:
                print(report.table(figures) + "\n", flush=True)
    print(report.table(figures))
    sys.exit(report.exit_code(figures))


# ---------------------------------------------------------------- processes
def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn

    settings = _settings()
    _configure_logging(settings)
    uvicorn.run(
        "app.main:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
    )


def cmd_worker(args: argparse.Namespace) -> None:
    from workers.main import run_worker

    settings = _settings()
    _configure_logging(settings)
    run_worker(settings, burst=args.burst)


def cmd_run(args: argparse.Namespace) -> None:
    """Everything on one machine: SQLite, an embedded Redis, the API and a worker."""
    from app.embedded_redis import EmbeddedRedis

    settings = _settings()
    if settings.is_production:
        sys.exit(
            "wavecast: `wavecast run` is the single-machine default; production runs "
            "`wavecast api` and `wavecast worker` against PostgreSQL and Redis"
        )
    _configure_logging(settings)
    _prepare_data_dir(settings)
    embedded: EmbeddedRedis | None = None
    if settings.uses_embedded_redis:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        url = embedded.start()
        log.info(
            "using the embedded Redis server; it stops when wavecast stops",
            extra={"redis_url": url},
        )
        os.environ["WAVECAST_REDIS_URL"] = url
        settings = _settings(redis_url=url)
    if settings.uses_embedded_database:
        log.info(
            "using the embedded SQLite database",
            extra={"database_url": settings.effective_database_url},
        )
    try:
        from app.db import migrate

        migrate.upgrade(settings.effective_database_url)
        _configure_logging(settings)  # Alembic's fileConfig replaces the handlers
        asyncio.run(_run_all(settings, args))
    except KeyboardInterrupt:
        pass
    finally:
        if embedded is not None:
            embedded.stop()


async def _run_all(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from app.auth import service as auth_service
    from app.auth.models import Scope
    from app.auth.principal import cli_principal
    from app.db.session import unit_of_work
    from app.devices import repository as devices_repo
    from app.main import create_app
    from app.runtime import Runtime
    from app.serving import QuietServer
    from workers.jobs import pump_timeout
    from workers.main import serve as serve_worker

    runtime = await Runtime.start(settings)
    try:
        async with unit_of_work(runtime.sessionmaker) as session:
            existing_devices = await devices_repo.count(session)
            keys = await auth_service.list_keys(session, include_revoked=True)
            admin = None
            if not keys:
                # The installation's first key: a service person named after it (an admin
                # names the humans behind keys with PATCH /v1/people/{id}).
                admin = await auth_service.create_key(
                    session, settings, cli_principal(), name="local admin", scopes=list(Scope)
                )
        if admin is not None:
            print(
                f"\n  An admin API key was created for this installation (shown once):\n"
                f"    {admin.raw}\n",
                flush=True,
            )
        if existing_devices == 0 and args.demo_devices > 0:
            created = await seed_devices(settings, args.demo_devices, seed=7)
            log.info("seeded demo devices", extra={"count": created})
        server = QuietServer(
            uvicorn.Config(
                create_app(settings, runtime=runtime),
                host=args.host,
                port=args.port,
                log_config=None,
                access_log=False,
            )
        )
        log.info("wavecast is running", extra={"url": f"http://{args.host}:{args.port}/ui"})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        api_task = asyncio.create_task(server.serve())
        # The same worker lifecycle as `wavecast worker`: send jobs drain on stop, and a
        # lost Redis is waited for rather than ending the process.
        worker_task = asyncio.create_task(serve_worker(settings, stop=stop))
        stop_task = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait(
            {api_task, worker_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
        )
        log.info("wavecast is stopping")
        stop.set()
        server.should_exit = True
        await asyncio.wait({api_task}, timeout=10)
        await asyncio.wait({worker_task}, timeout=pump_timeout(settings) + 5)
        worker_task.cancel()
        await asyncio.gather(worker_task, return_exceptions=True)
        stop_task.cancel()
        for task in done - {stop_task}:
            task.result()
    finally:
        await runtime.close()


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wavecast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="API + worker on the embedded default (SQLite, Redis)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument(
        "--demo-devices",
        type=int,
        default=2000,
        help="demo devices to seed into an empty database (0: none)",
    )
    run.set_defaults(func=cmd_run)

    api = sub.add_parser("api", help="run the HTTP API")
    api.add_argument("--host", default="0.0.0.0")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a delivery worker")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.set_defaults(func=cmd_worker)

    mig = sub.add_parser("migrate", help="bring the database schema to the latest version")
    mig.add_argument("--check", action="store_true", help="also fail if models and schema differ")
    mig.set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys", required=True)
    kc = keys.add_parser("create", help="create a key (shown once)")
    kc.add_argument("--name", required=True)
    kc.add_argument(
        "--person",
        required=True,
        help="the person the key belongs to: an id or an exact name (wavecast people list)",
    )
    kc.add_argument(
        "--scope",
        action="append",
        required=True,
        help="repeat for several: devices:write, campaigns:read, campaigns:write, "
        "campaigns:operate, kill, admin",
    )
    kc.set_defaults(func=cmd_keys_create)
    kl = keys.add_parser("list", help="list keys")
    kl.add_argument("--all", action="store_true", help="include revoked keys")
    kl.set_defaults(func=cmd_keys_list)
    kr = keys.add_parser("revoke", help="revoke a key by id")
    kr.add_argument("key_id")
    kr.add_argument("--reason")
    kr.set_defaults(func=cmd_keys_revoke)

    people = sub.add_parser("people", help="people: who holds the keys").add_subparsers(
        dest="people", required=True
    )
    pc = people.add_parser("create", help="add a person (a human or a service)")
    pc.add_argument("--name", required=True)
    pc.add_argument("--kind", required=True, choices=["human", "service"])
    pc.add_argument("--email")
    pc.add_argument("--slack-user-id", help="Slack member id (U0123ABCD)")
    pc.set_defaults(func=cmd_people_create)
    pl = people.add_parser("list", help="list people and the scopes their keys hold")
    pl.set_defaults(func=cmd_people_list)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit", required=True
    )
    av = audit.add_parser(
        "verify",
        help="check the hash chain; exit 1 naming the first break",
        description="Walk the audit log's hash chain in sequence order; exit 1 naming the "
        "first edited, deleted or reordered event. On success it prints the head (sequence "
        "and hash): keep it outside the database and pass it back with --expect-head.",
    )
    av.add_argument(
        "--expect-head",
        metavar="SEQUENCE:HASH",
        type=_expected_head,
        help="a head printed by an earlier verify: also exit 1 if the log is empty, ends "
        "before SEQUENCE, or carries another hash at SEQUENCE (a tail cut off or rewritten, "
        "which the chain alone cannot show); a log that grew past it passes",
    )
    av.set_defaults(func=cmd_audit_verify)
    ae = audit.add_parser(
        "export",
        help="the events of a time range as NDJSON, with the chain head, for an auditor",
        description="Write the events that occurred in [--from, --to) as NDJSON in chain "
        "order (each line an event's hashed fields with prev_hash and hash), then a last line "
        "with the chain head at export time: the same bytes as GET /v1/audit/export. "
        "Re-verify it offline with `wavecast audit verify-export`.",
    )
    ae.add_argument(
        "--from",
        dest="since",
        metavar="TIME",
        type=_aware_time,
        help="ISO-8601 with a time zone; events from it (inclusive); default: the first",
    )
    ae.add_argument(
        "--to",
        dest="until",
        metavar="TIME",
        type=_aware_time,
        help="ISO-8601 with a time zone; events before it (exclusive); default: up to the head",
    )
    ae.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    ae.set_defaults(func=cmd_audit_export)
    ave = audit.add_parser(
        "verify-export",
        help="re-verify an export offline; exit 1 naming the first bad line",
        description="Recompute every exported event's hash from its fields, check that each "
        "links to the line before and that the export ends where its head line says. No "
        "database is needed. Exit 1 naming the first bad line.",
    )
    ave.add_argument("file", metavar="FILE", help="an export written by `audit export` (- : stdin)")
    ave.add_argument(
        "--expect-head",
        metavar="SEQUENCE:HASH",
        type=_expected_head,
        help="a head kept elsewhere (printed by `wavecast audit verify`, or the last event of "
        "an earlier export): the export must hold SEQUENCE with HASH, or start right after it",
    )
    ave.set_defaults(func=cmd_audit_verify_export)

    ks = sub.add_parser(
        "kill-switch",
        help="the global kill switch",
        description="The global kill switch, through the same commands as the API: once "
        "engage answers, no provider request starts on any worker. Exit 3: the change is "
        "recorded but not yet confirmed (Redis unreachable, or sends still draining); ask "
        "again to confirm.",
    ).add_subparsers(dest="kill_switch", required=True)
    ks.add_parser("status", help="engaged or released, by whom, when and why").set_defaults(
        func=cmd_switch_status
    )
    kse = ks.add_parser("engage", help="stop every campaign at once")
    kse.add_argument("--reason", required=True)
    kse.set_defaults(func=cmd_switch_engage)
    ksr = ks.add_parser("release", help="release the switch; campaigns stay paused")
    ksr.add_argument("--reason", required=True)
    ksr.set_defaults(func=cmd_switch_release)

    camp = sub.add_parser(
        "campaigns",
        help="list, show, pause, resume and kill campaigns",
        description="Campaigns, through the same commands as the API: once pause or kill "
        "answers, no provider request of the campaign starts. Exit 3: the stop is recorded "
        "but not yet confirmed; ask again to confirm.",
    ).add_subparsers(dest="campaigns", required=True)
    cl = camp.add_parser("list", help="newest first")
    cl.add_argument("--status", help="only campaigns in this status (e.g. running)")
    cl.add_argument("--limit", type=int, default=50)
    cl.set_defaults(func=cmd_campaigns_list)
    cs = camp.add_parser("show", help="a campaign and its waves, as JSON")
    cs.add_argument("campaign_id")
    cs.set_defaults(func=cmd_campaigns_show)
    for action, help_text in (
        ("pause", "pause; resumable"),
        ("resume", "resume a paused campaign"),
        ("kill", "stop at once; terminal"),
    ):
        ca = camp.add_parser(action, help=help_text)
        ca.add_argument("campaign_id")
        ca.add_argument("--reason", required=action == "kill")
        ca.set_defaults(func=cmd_campaigns_act, action=action)

    led = sub.add_parser("ledger", help="the delivery ledger").add_subparsers(
        dest="ledger", required=True
    )
    lp = led.add_parser(
        "prune",
        help="prune the ledger of campaigns that ended long ago, keeping their figures",
        description="Campaigns that ended more than the retention ago (WAVECAST_LEDGER_"
        "RETENTION_DAYS, or --days) lose their ledger rows and engagement events; their "
        "per-wave figures are kept and the audit log records each prune.",
    )
    lp.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    lp.add_argument("--days", type=_positive_days, help="the retention, instead of the setting")
    lp.set_defaults(func=cmd_ledger_prune)

    dev = sub.add_parser("devices", help="devices").add_subparsers(dest="devices", required=True)
    di = dev.add_parser("import", help="import devices from an NDJSON file")
    di.add_argument("file")
    di.set_defaults(func=cmd_devices_import)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="demo", required=True)
    ds = demo.add_parser("seed", help="register realistic fake devices")
    ds.add_argument("--devices", type=int, default=1000)
    ds.add_argument("--seed", type=int, default=None)
    ds.set_defaults(func=cmd_demo_seed)
    fake = sub.add_parser(
        "fake",
        help="a local FCM or APNs protocol fake (`wavecast fake fcm --help`)",
        description="A local server that speaks FCM's or APNs' protocol; "
        "`wavecast fake fcm --help` lists its options.",
        # `--help` after the kind is the fake's own (passed on with its options).
        add_help=False,
    )
    fake.add_argument("-h", "--help", action="help", help="show this help and exit")
    fake.add_argument("kind", choices=["fcm", "apns", "slack"])
    fake.add_argument("options", nargs=argparse.REMAINDER, help="the fake's own options")
    fake.set_defaults(func=cmd_fake)

    bench = sub.add_parser("bench", help="benchmarks: one table of figures, exit 1 on a miss")
    bench.add_argument(
        "scenario", help="all, or one of: delivery, import, throttle, kill, api, scale"
    )
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the scenario's own options")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
