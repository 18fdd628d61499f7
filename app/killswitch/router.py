from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel
from redis.exceptions import RedisError

from app.campaigns.control import Control, StopNotConfirmed
from app.campaigns.schemas import Reason
from app.db.session import commit_now
from app.deps import Admin, CampaignsReader, KillOperator, RedisDep, SessionDep
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
async def get_switch(session: SessionDep, _: CampaignsReader) -> SwitchOut:
    return SwitchOut.of(await service.get_switch(session))


@router.post("", response_model=EngageOut)
async def engage(
    body: Reason, session: SessionDep, redis: RedisDep, principal: KillOperator
) -> EngageOut:
    """Stop every campaign at once. When this answers, no provider request starts on any
    worker; every running or scheduled campaign is paused and stays paused after release."""
    switch, paused = await service.engage(session, principal, reason=body.reason)
    await commit_now(session)
    control = Control(redis)
    what = "the global kill switch is engaged"
    try:
        await control.publish_switch(switch)
    except RedisError:
        raise StopNotConfirmed(what) from None
    in_flight = await control.stop(paused, everything=True, what=what)
    return EngageOut(
        **SwitchOut.of(switch).model_dump(),
        paused_campaigns=len(paused),
        in_flight_at_answer=in_flight,
    )


@router.post("/release", response_model=SwitchOut)
async def release(
    body: Reason, session: SessionDep, redis: RedisDep, principal: Admin
) -> SwitchOut:
    """Release the switch (admin only). Campaigns stay paused until resumed one by one."""
    switch = await service.release(session, principal, reason=body.reason)
    await commit_now(session)
    await Control(redis).publish_switch(switch)
    return SwitchOut.of(switch)
