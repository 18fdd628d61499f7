"""The calls the team channel makes: a Slack user's person, their scopes, their principal."""

from __future__ import annotations

from app.auth import service as auth_service
from app.auth.models import Scope
from app.auth.principal import SYSTEM, Channel
from app.db.session import unit_of_work
from app.people import service as people
from app.runtime import Runtime
from tests.conftest import KeyMaker, PersonMaker


async def test_a_slack_user_acts_as_their_person_with_their_keys_scopes(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    anna = await make_person("Anna", slack_user_id="U0ANNA")
    await make_key(Scope.kill, person=anna)
    await make_key(Scope.campaigns_read, Scope.campaigns_operate, person=anna)
    revoked = await make_key(Scope.admin, person=anna)
    await make_key(Scope.admin, name="another admin")  # so Anna's may be revoked
    async with unit_of_work(db.sessionmaker) as session:
        key = next(
            k for k in await auth_service.active_keys_of(session, anna) if "admin" in k.scopes
        )
        await auth_service.revoke_key(session, SYSTEM, key.id, reason="left on-call")
    assert revoked
    async with unit_of_work(db.sessionmaker) as session:
        assert await people.by_slack_user_id(session, "U0NOBODY") is None
        person = await people.by_slack_user_id(session, "U0ANNA")
        assert person is not None and person.id == anna
        assert await people.scopes_of(session, anna) == {
            Scope.kill,
            Scope.campaigns_read,
            Scope.campaigns_operate,
        }
        principal = await people.slack_principal(session, person)
    assert principal.channel is Channel.slack
    assert (principal.person_id, principal.person_name, principal.key_id) == (anna, "Anna", None)
    assert principal.is_human and principal.has(Scope.kill) and not principal.has(Scope.admin)
    assert principal.actor == "slack:U0ANNA (Anna)"
