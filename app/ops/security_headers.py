"""Security headers on every response the application sends.

- The form (`/ui`) may load only its own scripts, styles and images and post only to itself
  (no CDN: it must work without internet access), and no page may be framed.
- API answers are data, never documents: nothing may load from them at all.
- `/docs` and `/redoc` are FastAPI's Swagger UI and ReDoc pages, which load their bundles
  from jsDelivr and start them with an inline script. They get a policy of their own that
  allows exactly that (and nothing on other hosts), rather than no policy.
- API answers to authenticated requests must not be kept by any cache (`no-store`).
- Every answer names the deployment's environment (`Wavecast-Environment`), so an operator
  or a client can see which one it reached before acting on what it says.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = (
    "default-src 'none'; "
    "script-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src 'self' https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
    "font-src https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "connect-src 'self'; worker-src blob:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})

COMMON = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)


def policy_for(path: str) -> str:
    if path == "/ui" or path.startswith("/ui/"):
        return UI_CSP
    if path in DOCS_PATHS:
        return DOCS_CSP
    return API_CSP


ENVIRONMENT_HEADER = "Wavecast-Environment"


def headers_for(path: str, environment: str) -> list[tuple[str, str]]:
    """The headers every answer to `path` carries, including those sent without passing
    through the middleware (the unhandled-error answer)."""
    return [
        *COMMON,
        ("Content-Security-Policy", policy_for(path)),
        (ENVIRONMENT_HEADER, environment),
    ]


class SecurityHeaders:
    def __init__(self, app: ASGIApp, environment: str) -> None:
        self.app = app
        self.environment = environment

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        fixed = headers_for(path, self.environment)
        authenticated = path.startswith("/v1/") or path == "/v1"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in fixed:
                    headers.setdefault(name, value)
                if authenticated:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)
