"""People: who holds the keys, and who acts through Slack. Every change is audited.

The team channel's commands act for a person found by their Slack user id, with the rights
their keys hold; these are the calls it makes:

- `by_slack_user_id(session, slack_user_id)`: the person a Slack user is, or None;
- `scopes_of(session, person_id)`: the union of the scopes of their keys not revoked;
- `slack_principal(session, person)`: the principal a person acts as from Slack (channel
  `slack`, their keys' scopes, no key), for the same commands the API and the form call;
- `principal_for(session, person, channel)`: the same for any channel.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth import service as auth_service
from app.auth.models import Scope
from app.auth.principal import Channel, Principal
from app.db.types import utcnow
from app.errors import FieldError, Problem, not_found
from app.people import repository as repo
from app.people.models import Person, PersonKind
from app.people.schemas import PersonCreate, PersonOut, PersonPatch


async def get(session: AsyncSession, person_id: uuid.UUID, *, lock: bool = False) -> Person:
    person = await repo.get(session, person_id, lock=lock)
    if person is None:
        raise not_found("Person", person_id)
    return person


async def find(session: AsyncSession, ident: str) -> Person | None:
    """A person by id or, failing that, by exact name (the CLI's `--person`)."""
    try:
        person = await repo.get(session, uuid.UUID(ident))
    except ValueError:
        person = None
    return person or await repo.by_name(session, ident)


async def by_slack_user_id(session: AsyncSession, slack_user_id: str) -> Person | None:
    """The person a Slack user is (`person.slack_user_id`), or None when no one is."""
    return await repo.by_slack_user_id(session, slack_user_id)


async def scopes_of(session: AsyncSession, person_id: uuid.UUID) -> frozenset[Scope]:
    """What a person may do: the union of the scopes of their keys that are not revoked
    (read now, so a revocation takes effect on the next command)."""
    held: set[str] = set()
    for key in await auth_service.active_keys_of(session, person_id):
        held.update(key.scopes)
    return auth_service.known_scopes(held)


async def principal_for(session: AsyncSession, person: Person, channel: Channel) -> Principal:
    """The principal a person acts as without a key of their own in hand: their keys'
    scopes, the channel named, no key. The audit log names them and the channel."""
    tag = f"slack:{person.slack_user_id}" if channel is Channel.slack else channel.value
    return Principal(
        actor=f"{tag} ({person.name})"[:200],
        scopes=await scopes_of(session, person.id),
        key_id=None,
        person_id=person.id,
        person_name=person.name,
        person_kind=PersonKind(person.kind),
        channel=channel,
        slack_user_id=person.slack_user_id if channel is Channel.slack else None,
    )


async def slack_principal(session: AsyncSession, person: Person) -> Principal:
    """The principal for a person acting from Slack (channel `slack`): pass it to the same
    commands the API and the form use (e.g. `app.approval.service.approve`)."""
    return await principal_for(session, person, Channel.slack)


async def create(session: AsyncSession, principal: Principal, body: PersonCreate) -> Person:
    await _refuse_taken(session, name=body.name, slack_user_id=body.slack_user_id)
    person = Person(
        name=body.name, kind=body.kind, email=body.email, slack_user_id=body.slack_user_id
    )
    session.add(person)
    await _flush(session, body.name, body.slack_user_id)
    audit.record(
        session,
        principal,
        "person.created",
        subject_type="person",
        subject_id=person.id,
        after=_snapshot(person),
    )
    return person


async def update(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID, body: PersonPatch
) -> Person:
    person = await get(session, person_id, lock=True)
    changes = body.model_dump(exclude_unset=True)
    for required in ("name", "kind"):
        if required in changes and changes[required] is None:
            raise Problem(
                422,
                "Invalid request",
                f"{required}: may not be null",
                errors=[FieldError(required, "may not be null")],
            )
    if not changes:
        return person
    before = _snapshot(person)
    await _refuse_taken(
        session,
        name=changes.get("name"),
        slack_user_id=changes.get("slack_user_id"),
        other_than=person.id,
    )
    for field, value in changes.items():
        setattr(person, field, value)
    if before == _snapshot(person):
        return person
    person.updated_at = utcnow()
    session.add(person)
    await _flush(session, changes.get("name"), changes.get("slack_user_id"))
    audit.record(
        session,
        principal,
        "person.updated",
        subject_type="person",
        subject_id=person.id,
        before=before,
        after=_snapshot(person),
    )
    return person


async def list_people(session: AsyncSession) -> Sequence[Person]:
    return await repo.list_people(session)


async def view(session: AsyncSession, person: Person) -> PersonOut:
    return _out(person, await scopes_of(session, person.id))


async def views(session: AsyncSession, people: Sequence[Person]) -> list[PersonOut]:
    held = await auth_service.active_scopes_by_person(session)
    return [_out(p, auth_service.known_scopes(held.get(p.id, ()))) for p in people]


def _out(person: Person, scopes: frozenset[Scope]) -> PersonOut:
    return PersonOut(
        id=person.id,
        name=person.name,
        kind=person.kind,
        email=person.email,
        slack_user_id=person.slack_user_id,
        scopes=sorted(s.value for s in scopes),
        created_at=person.created_at,
        updated_at=person.updated_at,
    )


async def _refuse_taken(
    session: AsyncSession,
    *,
    name: str | None,
    slack_user_id: str | None,
    other_than: uuid.UUID | None = None,
) -> None:
    problems = []
    if name is not None:
        holder = await repo.by_name(session, name)
        if holder is not None and holder.id != other_than:
            problems.append(
                FieldError("name", f"{name!r} is already the name of person {holder.id}")
            )
    if slack_user_id is not None:
        holder = await repo.by_slack_user_id(session, slack_user_id)
        if holder is not None and holder.id != other_than:
            problems.append(
                FieldError(
                    "slack_user_id",
                    f"{slack_user_id} is already {holder.name!r}'s Slack user: one person "
                    "per Slack user",
                )
            )
    if problems:
        raise Problem(409, "Conflict", "; ".join(p["message"] for p in problems), errors=problems)


async def _flush(session: AsyncSession, name: str | None, slack_user_id: str | None) -> None:
    """Two requests taking the same name at once: the unique index refuses the second,
    answered as the conflict it is, not a server error."""
    try:
        await session.flush()
    except IntegrityError:
        taken = [
            FieldError(f, "was taken meanwhile")
            for f, v in (("name", name), ("slack_user_id", slack_user_id))
            if v is not None
        ]
        raise Problem(
            409, "Conflict", "the name or Slack user was taken meanwhile; try again", errors=taken
        ) from None


def _snapshot(person: Person) -> dict[str, Any]:
    return {
        "name": person.name,
        "kind": str(person.kind),
        "email": person.email,
        "slack_user_id": person.slack_user_id,
    }
