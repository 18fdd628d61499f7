from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, status
from pydantic import BaseModel, ConfigDict, Field

from app.auth import service
from app.auth.key_cache import announce_change
from app.auth.models import ApiKey, Scope
from app.db.session import commit_now
from app.deps import Admin, RedisDep, SessionDep, SettingsDep

router = APIRouter(prefix="/v1/keys", tags=["api keys"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1)
    person_id: uuid.UUID = Field(description="The person (POST /v1/people) the key belongs to")


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    person_id: uuid.UUID
    prefix: str
    scopes: list[str]
    created_by: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            name=key.name,
            person_id=key.person_id,
            prefix=key.prefix,
            scopes=key.scopes,
            created_by=key.created_by,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The raw key. It is shown only in this answer.")


class KeyRevoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000)


@router.post("", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
async def create_key(
    body: KeyCreate, session: SessionDep, settings: SettingsDep, principal: Admin
) -> KeyCreated:
    created = await service.create_key(
        session, settings, principal, name=body.name, scopes=body.scopes, person_id=body.person_id
    )
    return KeyCreated(**KeyOut.of(created.key).model_dump(), key=created.raw)


@router.get("", response_model=list[KeyOut])
async def list_keys(session: SessionDep, _: Admin, include_revoked: bool = False) -> list[KeyOut]:
    return [KeyOut.of(k) for k in await service.list_keys(session, include_revoked=include_revoked)]


@router.delete("/{key_id}", response_model=KeyOut)
async def revoke_key(
    key_id: uuid.UUID,
    session: SessionDep,
    principal: Admin,
    redis: RedisDep,
    body: Annotated[KeyRevoke | None, Body()] = None,
) -> KeyOut:
    key = await service.revoke_key(session, principal, key_id, reason=body.reason if body else None)
    # Committed, then announced, then answered: once the client reads the answer, every API
    # process has the announcement and refuses the key (`app.auth.key_cache`).
    await commit_now(session)
    await announce_change(redis)
    return KeyOut.of(key)
