"""The deployment's guard policy in the audit log: a process that starts with a policy other
than the last one recorded (a loosened first-wave cap, a shorter hold, another provider, a new
environment) writes the change down, with the deployment as its actor, before it serves or
sends anything.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import repository as audit_repo
from app.audit import service as audit
from app.auth.principal import Principal
from app.db.session import unit_of_work
from app.guard.deployment_policy import effective_policy
from app.settings import Settings

log = logging.getLogger("wavecast.guard")

ACTION = "policy.changed"
SUBJECT_TYPE = "deployment"
SUBJECT_ID = "guard-policy"
DEPLOYMENT = Principal(actor="deployment")
# Serialises processes starting together, so a change is recorded once (PostgreSQL; SQLite
# units of work hold the write lock from their first statement).
_LOCK_KEY = 0x57_43_50_4F_4C  # "WCPOL"


async def record_if_changed(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, process: str
) -> bool:
    """Record the effective policy when it differs from the last one recorded; True if it
    did. ``process`` names what is starting (``api``, ``worker``, ``run``)."""
    try:
        return await _record(sessionmaker, settings, process)
    except SQLAlchemyError as exc:
        # An unmigrated or unreachable database: /readyz says so; the next start records it.
        log.error(
            "guard policy not recorded: the database is not ready (run `wavecast migrate`)",
            extra={"starting": process, "error": type(exc).__name__},
        )
        return False


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, process: str
) -> bool:
    current: dict[str, Any] = effective_policy(settings).model_dump(mode="json")
    async with unit_of_work(sessionmaker) as session:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        previous = await audit_repo.last_after(
            session, subject_type=SUBJECT_TYPE, subject_id=SUBJECT_ID, action=ACTION
        )
        policy = dict(previous["policy"]) if previous and "policy" in previous else None
        if policy == current:
            return False
        audit.record(
            session,
            DEPLOYMENT,
            ACTION,
            subject_type=SUBJECT_TYPE,
            subject_id=SUBJECT_ID,
            reason=(
                f"the {process} on {socket.gethostname()} started with "
                + ("the first recorded guard policy" if policy is None else "a new guard policy")
            ),
            before={"policy": policy} if policy is not None else None,
            after={"policy": current, "changed": _changed(policy, current)},
        )
    log.warning(
        "guard policy changed",
        extra={"starting": process, "policy": effective_policy(settings).summary()},
    )
    return True


def _changed(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """Dotted names of the settings that differ (all of them for a first record)."""
    names: list[str] = []

    def walk(prefix: str, old: Any, new: Any) -> None:
        if isinstance(new, dict):
            for key in new:
                walk(
                    f"{prefix}{key}.",
                    old.get(key) if isinstance(old, dict) else None,
                    new[key],
                )
        elif old != new:
            names.append(prefix.rstrip("."))

    walk("", before, after)
    return names
