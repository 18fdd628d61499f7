"""The OpenAPI document says what the API really answers.

Every error is `application/problem+json` (RFC 9457, `app.errors`), not FastAPI's default
`HTTPValidationError` JSON, so each operation's error answers are declared here from what
it can meet: authentication and scopes (401, 403), the rate limit (429), bad input (422),
malformed, oversized, too slow or wrongly typed bodies (400, 413, 408, 415), unknown ids
(404), state conflicts (409), and a stop that could not reach Redis (503).

Each operation also declares what it needs (`security`, and a line of its description), read
from the dependencies that enforce it: `require(Scope...)` for a scope (`app.ops.routes`),
`get_principal` (or a dependency marked `AUTHENTICATES`, as `require` is) for a key. So the
document cannot say anything the code does not do.
Operations that ask for no key declare `security: []`: they are public.

The pages that show the document, Swagger UI (`/docs`) and ReDoc (`/redoc`), are served with
their scripts, stylesheet and icon from Wavecast itself (the files of the pinned
`fastapi-offline` package), so they work without internet access and under a policy that
allows no other origin (`app.ops.security_headers`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles

from app.auth.keys import KEY_MARK
from app.auth.models import Scope
from app.deps import AUTHENTICATES, get_principal
from app.ops.routes import api_routes, required_scopes

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


BEARER = "bearer"
BEARER_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": f"{KEY_MARK}_<prefix>_<secret>",
    "description": (
        f"An API key, sent as `Authorization: Bearer {KEY_MARK}_<prefix>_<secret>`: the "
        "12-hex-digit prefix names the key in listings and the audit log, the secret is shown "
        "once, when an admin creates the key (`POST /v1/keys`). Each key holds scopes; an "
        "operation names the one it needs, and `admin` holds them all."
    ),
}


def _requirement(scopes: set[Scope]) -> str:
    if not scopes:
        return "Requires an API key, with any scope."
    names = " and ".join(f"`{scope.value}`" for scope in sorted(scopes))
    if scopes == {Scope.admin}:
        return f"Requires scope {names}."
    return f"Requires scope {names} (or `{Scope.admin.value}`, which holds every scope)."


def authenticates(route: APIRoute) -> bool:
    """Whether the route asks for an API key (`get_principal`, or `require`, which calls it),
    with or without a scope."""

    def visit(dependant: Dependant) -> bool:
        call = dependant.call
        return (
            call is get_principal
            or getattr(call, AUTHENTICATES, False) is True
            or any(map(visit, dependant.dependencies))
        )

    return visit(route.dependant)


def declare_security(schema: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    """The bearer scheme, and on each operation what its route's dependencies demand: no key
    (`[]`), any key (`[{"bearer": []}]`), or a key holding every scope listed."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER] = BEARER_SCHEME
    needs = {
        (route.path_format, method.lower()): required_scopes(route)
        for route in api_routes(app)
        if authenticates(route)
        for method in route.methods or ()
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            scopes = needs.get((path, method))
            if scopes is None:
                operation["security"] = []
                continue
            operation["security"] = [{BEARER: sorted(scope.value for scope in scopes)}]
            described = operation.get("description", "")
            operation["description"] = "\n\n".join(filter(None, (described, _requirement(scopes))))
    return schema


# The files Swagger UI and ReDoc need, from the pinned package (never a CDN).
DOCS_FILES = files("fastapi_offline") / "static"
DOCS_ASSETS = "/docs/assets"
SWAGGER_INIT = "/docs/swagger-ui-init.js"

# A file, not an inline script, so the docs' policy allows scripts from 'self' only.
# FastAPI's own Swagger UI settings; the document's URL is read from the page.
_SWAGGER_INIT_JS = """\
"use strict";
window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.openapiUrl,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


def _page(title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{head}</head><body>{body}</body></html>\n"
    )


def install_pages(app: FastAPI) -> None:
    """`/docs` and `/redoc`, and under `/docs/` the files they load."""
    openapi_url = app.openapi_url or "/openapi.json"

    def head(root: str) -> str:
        return f'<link rel="icon" type="image/png" href="{root}{DOCS_ASSETS}/favicon.png">'

    def root_of(request: Request) -> str:
        return html.escape(str(request.scope.get("root_path", "")).rstrip("/"))

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = root_of(request)
        return _page(
            f"{app.title} - Swagger UI",
            head(root) + f'<link rel="stylesheet" href="{root}{DOCS_ASSETS}/swagger-ui.css">',
            f'<div id="swagger-ui" data-openapi-url="{root}{openapi_url}"></div>'
            f'<script src="{root}{DOCS_ASSETS}/swagger-ui-bundle.js"></script>'
            f'<script src="{root}{SWAGGER_INIT}"></script>',
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = root_of(request)
        return _page(
            f"{app.title} - ReDoc",
            head(root) + "<style>body { margin: 0 }</style>",
            f'<redoc spec-url="{root}{openapi_url}"></redoc>'
            f'<script src="{root}{DOCS_ASSETS}/redoc.standalone.js"></script>',
        )

    async def swagger_init(request: Request) -> Response:
        return Response(_SWAGGER_INIT_JS, media_type="text/javascript")

    # One mount at `/docs`, the docs' public path: everything under it belongs to the docs.
    app.mount(
        "/docs",
        Router(
            routes=[
                Route(SWAGGER_INIT.removeprefix("/docs"), swagger_init),
                Mount(DOCS_ASSETS.removeprefix("/docs"), StaticFiles(directory=str(DOCS_FILES))),
            ]
        ),
        name="docs-files",
    )


def install(app: FastAPI) -> None:
    """The document as described above, and the pages that show it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            app.openapi_schema = declare_security(declare_problems(document), app)
        return app.openapi_schema

    replace: Callable[[], dict[str, Any]] = openapi
    app.openapi = replace  # type: ignore[method-assign]
    install_pages(app)
