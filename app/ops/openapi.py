"""The OpenAPI document says what the API really answers.

Every error is `application/problem+json` (RFC 9457, `app.errors`), not FastAPI's default
`HTTPValidationError` JSON, so each operation's error answers are declared here from what
it can meet: authentication and scopes (401, 403), the rate limit (429), bad input (422),
malformed, oversized, too slow or wrongly typed bodies (400, 413, 408, 415), unknown ids
(404), state conflicts (409), and a stop that could not reach Redis (503).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}

DESCRIPTIONS = {
    "400": "Malformed request body",
    "401": "No API key, or an unknown or revoked one",
    "403": "The API key lacks the scope this operation needs",
    "404": "No such resource",
    "408": "The request body did not arrive in time",
    "409": "The resource's state does not allow this",
    "413": "Request body too large",
    "415": "The body's media type is not one this operation takes; `accepted` lists them",
    "422": "Invalid input; `errors[]` names each offending field",
    "429": "Rate limit exceeded; retry after `Retry-After` seconds",
    "503": "Recorded, but Redis could not be reached to act on it yet",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
_MUTATING = {"post", "put", "patch", "delete"}
_STOPS = ("/pause", "/cancel", "/kill", "/kill-switch", "/kill-switch/release", "/resume", "/start")


def _errors_for(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    codes = ["401", "403", "422", "429"]
    if "requestBody" in operation:
        codes += ["400", "408", "413", "415"]
    if "{" in path or method in _MUTATING:
        codes += ["404", "409"]
    if method == "post" and path.endswith(_STOPS):
        codes.append("503")
    return codes


def declare_problems(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/v1"):
            continue
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code in _errors_for(path, method, operation):
                declared: dict[str, Any] = {
                    "description": DESCRIPTIONS[code],
                    "content": {"application/problem+json": {"schema": ref}},
                }
                if code in ("429", "503"):
                    declared["headers"] = _RETRY_AFTER
                responses[code] = declared
    return schema


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_problems(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    replace: Callable[[], dict[str, Any]] = openapi
    app.openapi = replace  # type: ignore[method-assign]
