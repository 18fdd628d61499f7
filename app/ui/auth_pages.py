"""Sign-in and sign-out with an API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.auth import service as auth_service
from app.db.session import unit_of_work
from app.deps import RuntimeDep
from app.ui import sessions
from app.ui.deps import CsrfRefused, Operator, get_operator
from app.ui.render import page, see_other

router = APIRouter(prefix="/ui")

HOME = "/ui/campaigns"


def safe_next(target: str | None) -> str:
    """Only a path inside the form: an open redirect to another site is refused."""
    if target and target.startswith("/ui/") and not target.startswith("/ui//"):
        return target
    return HOME


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _sign_in_page(
    request: Request, next_url: str, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    # Sign-in has no session yet; its form is protected by a double-submitted token (cookie
    # and hidden field), so another site cannot sign a browser in under its own key.
    token = sessions.new_token()
    response = page(
        request,
        "sign_in.html",
        status_code=status_code,
        csrf=token,
        next=next_url,
        error=error,
        op=None,
    )
    response.set_cookie(
        sessions.PRE_COOKIE,
        token,
        max_age=sessions.PRE_TTL_SECONDS,
        path="/ui/sign-in",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("", include_in_schema=False)
async def home() -> Response:
    return see_other(HOME)


@router.get("/sign-in", response_class=HTMLResponse, include_in_schema=False)
async def sign_in_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _sign_in_page(request, safe_next(next))


@router.post("/sign-in", include_in_schema=False)
async def sign_in(
    request: Request,
    runtime: RuntimeDep,
    key: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = HOME,
) -> Response:
    if not sessions.tokens_match(request.cookies.get(sessions.PRE_COOKIE, ""), csrf):
        raise CsrfRefused()
    async with unit_of_work(runtime.sessionmaker) as db:
        principal = await auth_service.authenticate(db, runtime.settings, key.strip())
    if principal is None or principal.key_id is None:
        return _sign_in_page(
            request,
            safe_next(next),
            error="That API key is unknown or revoked.",
            status_code=401,
        )
    # A fresh id every time; whatever session id the browser held is ended, never adopted.
    old = request.cookies.get(sessions.COOKIE)
    if old:
        await sessions.delete(runtime.redis, old)
    session = await sessions.create(runtime.redis, principal.key_id)
    response = see_other(safe_next(next))
    response.set_cookie(
        sessions.COOKIE,
        session.id,
        max_age=sessions.TTL_SECONDS,
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(sessions.PRE_COOKIE, path="/ui/sign-in")
    return response


@router.post("/sign-out", include_in_schema=False)
async def sign_out(
    request: Request, runtime: RuntimeDep, operator: Annotated[Operator, Depends(get_operator)]
) -> Response:
    await sessions.delete(runtime.redis, operator.session.id)
    response = see_other("/ui/sign-in")
    response.delete_cookie(
        sessions.COOKIE,
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response
