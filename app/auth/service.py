"""API keys: creation (shown once), authentication, revocation; all audited."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth import keys
from app.auth import repository as repo
from app.auth.models import ApiKey, Scope
from app.auth.principal import Channel, Principal
from app.db.types import utcnow
from app.errors import FieldError, Problem, not_found, validation_problem
from app.people import repository as people_repo
from app.people.models import Person, PersonKind
from app.settings import Settings


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    raw: str


def _pepper(settings: Settings) -> str:
    return settings.key_pepper.get_secret_value()


def describe(key: ApiKey) -> str:
    return f"key:{key.prefix}"


async def create_key(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    *,
    name: str,
    scopes: Iterable[Scope],
    person_id: uuid.UUID | None = None,
) -> CreatedKey:
    """A new key for the person `person_id` (422 naming `person_id` when there is no such
    person). Without one, for the installation's first key and the tools that make their
    own: a new `service` person named after the key (the rule keys made before people
    existed were moved by)."""
    wanted = sorted({Scope(s) for s in scopes})
    if not wanted:
        raise Problem(422, "Invalid request", "scopes: at least one scope is required")
    if person_id is None:
        person = await _person_named_after(session, name)
    else:
        found = await people_repo.get(session, person_id)
        if found is None:
            raise validation_problem([FieldError("person_id", f"no person with id {person_id}")])
        person = found
    new = keys.generate()
    key = ApiKey(
        person_id=person.id,
        name=name,
        prefix=new.prefix,
        key_hash=keys.digest(new.raw, _pepper(settings)),
        scopes=[s.value for s in wanted],
        created_by=principal.actor,
    )
    session.add(key)
    audit.record(
        session,
        principal,
        "api_key.created",
        subject_type="api_key",
        subject_id=key.id,
        after={
            "name": name,
            "prefix": key.prefix,
            "scopes": key.scopes,
            "person_id": str(person.id),
            "person_name": person.name,
        },
    )
    await session.flush()
    return CreatedKey(key=key, raw=new.raw)


async def _person_named_after(session: AsyncSession, name: str) -> Person:
    """A new `service` person for a key made without one; a name already taken gets a
    number (" #2", " #3"...), so no key joins someone else's person by accident."""
    candidate, number = name, 1
    while await people_repo.by_name(session, candidate) is not None:
        number += 1
        candidate = f"{name[:190]} #{number}"
    person = Person(name=candidate, kind=PersonKind.service)
    session.add(person)
    await session.flush()
    return person


async def revoke_key(
    session: AsyncSession, principal: Principal, key_id: uuid.UUID, *, reason: str | None
) -> ApiKey:
    key = await repo.get(session, key_id)
    if key is None:
        raise not_found("API key", key_id)
    if key.revoked_at is None and _is_admin(key):
        await _keep_an_admin(session, key)
    # Read again under the lock: a revocation that committed meanwhile is not repeated.
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
        audit.record(
            session,
            principal,
            "api_key.revoked",
            subject_type="api_key",
            subject_id=key.id,
            reason=reason,
            before={"prefix": key.prefix, "scopes": key.scopes},
        )
    return key


async def _keep_an_admin(session: AsyncSession, key: ApiKey) -> None:
    """Refuse to revoke the last active admin key: without one, no key could be created or
    revoked again, nor the kill switch released, short of editing the database.

    Every active admin key is locked (in id order, so two revocations cannot deadlock)
    and read again, so two admins revoking each other at once cannot both succeed.
    """
    admins = [k for k in await repo.list_keys(session, include_revoked=False) if _is_admin(k)]
    remaining = 0
    for candidate in sorted(admins, key=lambda k: k.id):
        locked = await session.get(
            ApiKey, candidate.id, with_for_update=True, populate_existing=True
        )
        if locked is not None and locked.id != key.id and _is_active_admin(locked):
            remaining += 1
    if remaining == 0:
        raise Problem(
            409,
            "Last admin key",
            f"{describe(key)} ({key.name}) is the last active admin key; create another "
            "admin key before revoking this one, or no one could manage keys or release "
            "the kill switch",
        )


def _is_admin(key: ApiKey) -> bool:
    return Scope.admin.value in key.scopes


def _is_active_admin(key: ApiKey) -> bool:
    return key.revoked_at is None and _is_admin(key)


async def list_keys(session: AsyncSession, *, include_revoked: bool) -> Sequence[ApiKey]:
    return await repo.list_keys(session, include_revoked=include_revoked)


async def active_keys_of(session: AsyncSession, person_id: uuid.UUID) -> Sequence[ApiKey]:
    return await repo.active_keys_of(session, person_id)


active_scopes_by_person = repo.active_scopes_by_person


async def authenticate(session: AsyncSession, settings: Settings, raw: str) -> Principal | None:
    """The principal behind a raw key, or None when it is malformed, unknown or revoked, as
    the database says now. API requests reach it through the key cache
    (`app.auth.key_cache`): a revocation is refused at once by the process that made it and
    by every other within WAVECAST_KEY_REVOCATION_SECONDS."""
    prefix = keys.split(raw)
    if prefix is None:
        return None
    key = await repo.by_prefix(session, prefix)
    if key is None or key.revoked_at is not None:
        return None
    if not keys.matches(raw, key.key_hash, _pepper(settings)):
        return None
    return await _principal(session, key, Channel.api)


async def authenticate_id(session: AsyncSession, key_id: uuid.UUID) -> Principal | None:
    """The principal behind a key already proven once (a signed-in browser session, channel
    `ui`), or None when the key is gone or revoked: read on every request, so revocation
    ends the session."""
    key = await repo.get(session, key_id)
    if key is None or key.revoked_at is not None:
        return None
    return await _principal(session, key, Channel.ui)


async def _principal(session: AsyncSession, key: ApiKey, channel: Channel) -> Principal:
    person = await people_repo.get(session, key.person_id)
    return Principal(
        actor=f"{describe(key)} ({key.name})",
        scopes=known_scopes(key.scopes),
        key_id=key.id,
        person_id=key.person_id,
        person_name=person.name if person is not None else None,
        person_kind=PersonKind(person.kind) if person is not None else None,
        channel=channel,
    )


def known_scopes(scopes: Iterable[str]) -> frozenset[Scope]:
    return frozenset(Scope(s) for s in scopes if s in Scope._value2member_map_)
