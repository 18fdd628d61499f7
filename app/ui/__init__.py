"""The internal campaign form at `/ui`: server-rendered pages, their assets, their errors."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import Problem, problem_response
from app.ui import auth_pages, campaign_edit, campaign_pages, ops_pages
from app.ui.deps import SignInRequired
from app.ui.render import STATIC, page, see_other

API_PREFIX = "/ui/api/"


def _is_page(request: Request) -> bool:
    path = request.url.path
    return (path == "/ui" or path.startswith("/ui/")) and not path.startswith(API_PREFIX)


def install(app: FastAPI) -> None:
    """Mount the form's pages and assets, and answer errors under `/ui` with pages (the JSON
    endpoints under `/ui/api/` keep problem+json, like the API)."""
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    # The edit page before the campaign pages: their POST /campaigns/{id}/{action} would
    # take /campaigns/{id}/edit as an unknown action.
    for module in (auth_pages, campaign_edit, campaign_pages, ops_pages):
        app.include_router(module.router)

    api_handlers = {
        kind: app.exception_handlers[kind]
        for kind in (Problem, StarletteHTTPException, RequestValidationError)
    }

    async def on_sign_in(request: Request, exc: Exception) -> Response:
        if not _is_page(request):
            return problem_response(
                Problem(401, "Unauthorized", "sign in again: the session has ended"), request
            )
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return see_other("/ui/sign-in?next=" + quote(target, safe=""))

    async def on_error(request: Request, exc: Exception) -> Response:
        if not _is_page(request):
            kind = next(k for k in api_handlers if isinstance(exc, k))
            answer: Response = await api_handlers[kind](request, exc)  # type: ignore[misc]
            return answer
        if isinstance(exc, Problem):
            status, title, detail = exc.status, exc.title, exc.detail
        elif isinstance(exc, StarletteHTTPException):
            status = exc.status_code
            title = "Not found" if status == 404 else "Error"
            detail = exc.detail if isinstance(exc.detail, str) else title
        else:
            status, title, detail = 404, "Not found", "that address does not name a page here"
        op = getattr(request.state, "ui_operator", None)
        return page(request, "error.html", status, op=op, title=title, detail=detail)

    app.add_exception_handler(SignInRequired, on_sign_in)
    for kind in api_handlers:
        app.add_exception_handler(kind, on_error)
