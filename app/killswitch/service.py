"""The global kill switch's row: engaged or released, audited. Engaging it pauses every live
campaign (`app.campaigns.commands.engage_switch`); releasing needs an admin and a reason and
leaves every campaign paused, to be resumed one by one."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.db.types import utcnow
from app.errors import Problem
from app.killswitch import repository
from app.killswitch.models import SWITCH_ID, KillSwitch


async def get_switch(session: AsyncSession, *, lock: bool = False) -> KillSwitch:
    """The switch row, created released if it is missing (a fresh or truncated database)."""
    switch = await repository.get(session, lock=lock)
    if switch is not None:
        return switch
    await repository.create_released(session)
    switch = await repository.get(session, lock=lock)
    assert switch is not None
    return switch


async def is_engaged(session: AsyncSession) -> bool:
    """A plain read, for callers that only report or skip work: it decides no transition,
    since the switch may change the moment after (use ``hold_released`` for that)."""
    return (await get_switch(session)).engaged


async def hold_released(session: AsyncSession, *, refusal: str) -> KillSwitch:
    """Refuse with 409 (``refusal`` as the detail) unless the switch is released, and keep it
    released until this transaction ends: for a transition that makes a campaign live.

    The switch row is locked (FOR UPDATE), and ``engage`` locks it first too, so the two
    serialise: either this transaction commits its running campaign before ``engage`` reads
    the live campaigns (which then include it, and are paused), or ``engage`` commits first
    and this reads it engaged. Without the lock a start could read "released", an engage
    could commit its list of live campaigns without it, and the start commit after: a
    running campaign under an engaged switch, sent the moment the switch is released.

    Take it before locking the campaign: ``engage`` locks the switch, then campaigns, and
    the same order everywhere is what keeps the two from deadlocking. On SQLite, FOR UPDATE
    is not emitted; there the transaction's database-wide write lock, taken when it begins
    (BEGIN IMMEDIATE), gives the same order.
    """
    switch = await get_switch(session, lock=True)
    if switch.engaged:
        raise Problem(409, "Conflict", refusal)
    return switch


async def engage(session: AsyncSession, principal: Principal, *, reason: str) -> KillSwitch:
    """Engage the switch (audited). Pausing the live campaigns is the caller's
    (`app.campaigns.commands.engage_switch`), under this lock.

    Asked again with the reason in force, it answers the engagement in force: that is how a
    stop answered "recorded, not yet confirmed" is confirmed. Asked with another reason while
    engaged, it refuses with 409 naming who engaged it, when and why, so a second reason is
    never dropped without its author knowing.
    """
    switch = await get_switch(session, lock=True)
    if switch.engaged and switch.reason != reason:
        raise already_engaged(switch)
    if not switch.engaged:
        now = utcnow()
        switch.engaged = True
        switch.version += 1
        switch.changed_by = principal.actor
        switch.changed_at = now
        switch.reason = reason
        session.add(switch)
        audit.record(
            session,
            principal,
            "kill_switch.engaged",
            subject_type="kill_switch",
            subject_id=SWITCH_ID,
            reason=reason,
            before={"engaged": False},
            after={"engaged": True},
        )
    await session.flush()
    return switch


def already_engaged(switch: KillSwitch) -> Problem:
    when = switch.changed_at.isoformat() if switch.changed_at else "an unknown time"
    return Problem(
        409,
        "Conflict",
        f"the global kill switch is already engaged, by {switch.changed_by or 'unknown'} "
        f"at {when}: {switch.reason or 'no reason given'}",
        extra={
            "engaged_by": switch.changed_by,
            "engaged_at": switch.changed_at.isoformat() if switch.changed_at else None,
            "engaged_reason": switch.reason,
        },
    )


async def release(session: AsyncSession, principal: Principal, *, reason: str) -> KillSwitch:
    switch = await get_switch(session, lock=True)
    if not switch.engaged:
        raise Problem(409, "Conflict", "the global kill switch is not engaged")
    switch.engaged = False
    switch.version += 1
    switch.changed_by = principal.actor
    switch.changed_at = utcnow()
    switch.reason = reason
    session.add(switch)
    audit.record(
        session,
        principal,
        "kill_switch.released",
        subject_type="kill_switch",
        subject_id=SWITCH_ID,
        reason=reason,
        before={"engaged": True},
        after={"engaged": False},
    )
    await session.flush()
    return switch
