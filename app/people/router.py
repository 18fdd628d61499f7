from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from app.deps import Admin, SessionDep
from app.people import service
from app.people.schemas import PersonCreate, PersonOut, PersonPatch

router = APIRouter(prefix="/v1/people", tags=["people"])


@router.post("", response_model=PersonOut, status_code=status.HTTP_201_CREATED)
async def create_person(body: PersonCreate, session: SessionDep, principal: Admin) -> PersonOut:
    """A human or a service (a marketing tool). Names and Slack user ids are unique (409)."""
    return await service.view(session, await service.create(session, principal, body))


@router.get("", response_model=list[PersonOut])
async def list_people(session: SessionDep, _: Admin) -> list[PersonOut]:
    return await service.views(session, await service.list_people(session))


@router.get("/{person_id}", response_model=PersonOut)
async def get_person(person_id: uuid.UUID, session: SessionDep, _: Admin) -> PersonOut:
    return await service.view(session, await service.get(session, person_id))


@router.patch("/{person_id}", response_model=PersonOut)
async def patch_person(
    person_id: uuid.UUID, body: PersonPatch, session: SessionDep, principal: Admin
) -> PersonOut:
    """Change a person; only the fields sent change (`email`, `slack_user_id`: null clears)."""
    person = await service.update(session, principal, person_id, body)
    return await service.view(session, person)
