"""RFC 9457 problem details for every 4xx and 5xx answer.

Every problem names what went wrong and, where a field is at fault, which field: clients
show the `errors[].field` beside the input the user has to fix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.ops.middleware import allowed_methods

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("wavecast.errors")


RESERVED_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "errors"})


class FieldError(dict[str, str]):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(field=field, message=message)


class Problem(Exception):
    """An error that becomes a problem+json answer."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] = (),
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail or title
        self.errors = list(errors)
        self.type = type_
        self.headers = headers
        self.extra = extra or {}
        reserved = RESERVED_MEMBERS.intersection(self.extra)
        if reserved:
            # RFC 9457: `status` is the HTTP status code; a domain value under one of these
            # names would contradict the answer (and the OpenAPI schema), so it needs its own.
            raise ValueError(f"problem extension members may not be named {sorted(reserved)}")


def validation_problem(errors: Sequence[FieldError], title: str = "Invalid request") -> Problem:
    first = errors[0]
    detail = f"{first['field']}: {first['message']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return Problem(422, title, detail, errors=errors)


def not_found(what: str, ident: object) -> Problem:
    return Problem(404, f"{what} not found", f"no {what.lower()} with id {ident}")


class ProblemResponse(JSONResponse):
    """A problem's JSON. A refusal may quote what the caller sent, and JSON can carry a lone
    surrogate (`"\\ud800"`) that UTF-8 cannot: such a problem is written with every
    non-ASCII character escaped, so the refusal still reaches the caller as the 4xx it is."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    if problem.errors:
        body["errors"] = problem.errors
    body.update(problem.extra)
    return ProblemResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def _field_path(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    # FastAPI prefixes the source ("body", "query", "path", "header"); keep it for non-body
    # sources, where it tells the client where to look, and drop it for bodies.
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


# Messages for pattern mismatches, by field name; domains register theirs here.
PATTERN_MESSAGES: dict[str, str] = {}


def describe(err: Mapping[str, Any]) -> str:
    """One validation error as a sentence for the person who has to fix the input."""
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field; it is not accepted here"
    if kind == "missing":
        return "field required"
    if kind == "timezone_aware":
        return "the timestamp needs its timezone offset, e.g. Z or +01:00"
    if kind == "string_pattern_mismatch":
        loc = err.get("loc", ())
        name = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
        if name in PATTERN_MESSAGES:
            return PATTERN_MESSAGES[name]
    return str(err.get("msg", "invalid value"))


def _from_validation(exc: RequestValidationError) -> Problem:
    errors: list[FieldError] = []
    for err in exc.errors():
        loc = err.get("loc", ())
        kind = err.get("type", "")
        if kind == "json_invalid":
            ctx = err.get("ctx") or {}
            return Problem(
                400,
                "Malformed JSON",
                f"the request body is not valid JSON: {ctx.get('error', 'parse error')}",
                errors=[FieldError("body", "not valid JSON")],
            )
        errors.append(FieldError(_field_path(loc), describe(err)))
    if not errors:
        errors.append(FieldError("body", "invalid request"))
    return validation_problem(errors)


def install(
    app: FastAPI, answer_headers: Callable[[str], Iterable[tuple[str, str]]] = lambda _: ()
) -> None:
    """Answer every error as problem+json. `answer_headers(path)` are added to the answer
    to an unhandled error, which Starlette sends from outside every middleware."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(_from_validation(exc), request)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title = {
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not found",
            405: "Method not allowed",
            408: "Request timeout",
            413: "Request body too large",
            415: "Unsupported media type",
        }.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette names only the first route at the path; `Allow` must list them all.
            allow = allowed_methods(request.app.router.routes, request.url.path)
            headers = {**(headers or {}), "Allow": ", ".join(allow)}
        return problem_response(Problem(exc.status_code, title, detail, headers=headers), request)

    async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        answer = problem_response(
            Problem(500, "Internal server error", "the server failed; the error was logged"),
            request,
        )
        for name, value in answer_headers(request.url.path):
            answer.headers.setdefault(name, value)
        return answer

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unhandled)
