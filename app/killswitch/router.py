from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from app.campaigns import commands
from app.campaigns.schemas import Reason
from app.control.plane import Control
from app.deps import Admin, KillOperator, RedisDep, SessionDep
from app.killswitch import service
from app.killswitch.models import KillSwitch

router = APIRouter(prefix="/v1/kill-switch", tags=["kill switch"])


class SwitchOut(BaseModel):
    engaged: bool
    changed_by: str | None
    changed_at: datetime | None
    reason: str | None

    @classmethod
    def of(cls, switch: KillSwitch) -> SwitchOut:
        return cls(
            engaged=switch.engaged,
            changed_by=switch.changed_by,
            changed_at=switch.changed_at,
            reason=switch.reason,
        )


class EngageOut(SwitchOut):
    paused_campaigns: int
    in_flight_at_answer: int


@router.get("", response_model=SwitchOut)
async def get_switch(session: SessionDep, _: KillOperator) -> SwitchOut:
    """The switch as it stands: for whoever holds the right to press it (on-call)."""
    return SwitchOut.of(await service.get_switch(session))


@router.post("", response_model=EngageOut)
async def engage(
    body: Reason, session: SessionDep, redis: RedisDep, principal: KillOperator
) -> EngageOut:
    """Stop every campaign at once. When this answers, no provider request starts on any
    worker; every running or scheduled campaign is paused and stays paused after release.
    While engaged, asking again with the reason in force confirms the stop; another reason
    is refused with 409 naming who engaged it, when and why."""
    engaged = await commands.engage_switch(session, Control(redis), principal, reason=body.reason)
    return EngageOut(
        **SwitchOut.of(engaged.switch).model_dump(),
        paused_campaigns=len(engaged.paused),
        in_flight_at_answer=0,
    )


@router.post("/release", response_model=SwitchOut)
async def release(
    body: Reason, session: SessionDep, redis: RedisDep, principal: Admin
) -> SwitchOut:
    """Release the switch (admin only). Campaigns stay paused until resumed one by one."""
    switch = await commands.release_switch(session, Control(redis), principal, reason=body.reason)
    return SwitchOut.of(switch)
