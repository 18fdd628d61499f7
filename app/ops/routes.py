"""The application's route table, flattened (for the scope matrix and the docs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.auth.models import Scope


def api_routes(app: FastAPI) -> Iterator[APIRoute]:
    def walk(routes: list[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):
                yield from walk(route.original_router.routes)

    yield from walk(list(app.routes))


def required_scopes(route: APIRoute) -> set[Scope]:
    found: set[Scope] = set()

    def visit(dependant: Dependant) -> None:
        call: Callable[..., Any] | None = dependant.call
        scope = getattr(call, "required_scope", None)
        if scope is not None:
            found.add(scope)
        for sub in dependant.dependencies:
            visit(sub)

    visit(route.dependant)
    return found


# Routes anyone may call without a key: probes, metrics and the API's own documentation.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"})
# The internal form authenticates its own way (a session and CSRF tokens), not by API key.
FORM_PREFIX = "/ui"
# Slack's commands and buttons (app.slack) carry Slack's signature, not an API key; each
# action is then allowed by the scopes of the person the Slack user is.
SLACK_PREFIX = "/slack"


def all_paths(app: FastAPI) -> Iterator[tuple[str, Any]]:
    """Every route the application serves, API routes and others (docs, form, mounts)."""

    def walk(routes: list[Any]) -> Iterator[tuple[str, Any]]:
        for route in routes:
            if hasattr(route, "original_router"):
                yield from walk(route.original_router.routes)
            else:
                yield getattr(route, "path", repr(route)), route

    yield from walk(list(app.routes))
