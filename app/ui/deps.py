"""Who is using the form: the session behind the cookie, its key re-read, its CSRF checked.

The same scopes as the API apply (`Principal.has`); a page that needs more than the key holds
answers 403. Without a valid session every page redirects to sign-in (`SignInRequired`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from app.auth import service as auth_service
from app.auth.models import Scope
from app.auth.principal import Principal
from app.db.session import unit_of_work
from app.deps import RuntimeDep, require_schema
from app.errors import Problem
from app.killswitch import service as killswitch
from app.ops.ratelimit import charge_failed_auth
from app.ui import sessions

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class SignInRequired(Exception):
    """No session, an expired one, or one whose key was revoked."""


class CsrfRefused(Problem):
    def __init__(self) -> None:
        super().__init__(
            403,
            "Forbidden",
            "the form's security token is missing or out of date; reload the page and try again",
        )


@dataclass(frozen=True)
class SwitchState:
    engaged: bool
    reason: str | None
    changed_by: str | None
    changed_at: datetime | None


@dataclass(frozen=True)
class Operator:
    principal: Principal
    session: sessions.UiSession
    switch: SwitchState

    @property
    def csrf(self) -> str:
        return self.session.csrf

    def can(self, scope: Scope | str) -> bool:
        return self.principal.has(Scope(scope))


async def check_csrf(request: Request, expected: str) -> None:
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not sessions.tokens_match(expected, given):
        raise CsrfRefused()


async def get_operator(request: Request, runtime: RuntimeDep) -> Operator:
    cookie = request.cookies.get(sessions.COOKIE)
    session = await sessions.load(runtime.redis, cookie)
    if session is None:
        if cookie:
            # Rate limits bucket form requests by their cookie: one that opens no session
            # counts against its address, so inventing cookies is no way around the limit.
            await charge_failed_auth(request.scope)
        raise SignInRequired()
    await require_schema(request, runtime)
    async with unit_of_work(runtime.sessionmaker) as db:
        principal = await auth_service.authenticate_id(db, session.key_id)
        switch = await killswitch.get_switch(db)
        state = SwitchState(switch.engaged, switch.reason, switch.changed_by, switch.changed_at)
    if principal is None:
        await sessions.delete(runtime.redis, session.id)
        raise SignInRequired()
    if request.method not in ("GET", "HEAD"):
        await check_csrf(request, session.csrf)
    request.state.principal = principal
    operator = Operator(principal=principal, session=session, switch=state)
    # An error page answered after this point (a scope the page needs, a campaign that is
    # not there) keeps the signed-in header: the navigation and the sign-out button.
    request.state.ui_operator = operator
    return operator


def needs(*scopes: Scope) -> Callable[..., Coroutine[Any, Any, Operator]]:
    """A page for keys holding any one of `scopes`."""

    async def dependency(operator: Annotated[Operator, Depends(get_operator)]) -> Operator:
        if not any(operator.can(scope) for scope in scopes):
            named = "' or '".join(scope.value for scope in scopes)
            raise Problem(403, "Forbidden", f"your API key lacks the '{named}' scope needed here")
        return operator

    dependency.__name__ = "ui_needs_" + "_or_".join(scope.name for scope in scopes)
    return dependency


Reader = Annotated[Operator, Depends(needs(Scope.campaigns_read))]
# On call with only the kill scope: the switch, the running campaigns read-only, and the
# stops; each action still checks its own scope.
Watcher = Annotated[Operator, Depends(needs(Scope.campaigns_read, Scope.kill))]
Writer = Annotated[Operator, Depends(needs(Scope.campaigns_write))]
Killer = Annotated[Operator, Depends(needs(Scope.kill))]
AdminOperator = Annotated[Operator, Depends(needs(Scope.admin))]
