"""Security headers on every response the application sends.

- The form (`/ui`) may load only its own scripts, styles and images and post only to itself
  (no CDN: it must work without internet access), and no page may be framed.
- API answers are data, never documents: nothing may load from them at all.
- `/docs` and `/redoc` are the Swagger UI and ReDoc pages (`app.ops.openapi`), which load
  their scripts, stylesheet and icon from this service only. Their policy allows scripts
  from 'self' alone; inline styles, because both libraries set styles from script; and a
  `blob:` worker, ReDoc's search index. No other origin: ReDoc's footer logo, the one file
  it would fetch from elsewhere, is refused and ReDoc shows the footer's text without it.
- API answers to authenticated requests must not be kept by any cache (`no-store`).
- Every answer names the deployment's environment (`Wavecast-Environment`), so an operator
  or a client can see which one it reached before acting on what it says.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/redoc"})

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


_NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    def __init__(self, app: ASGIApp, environment: str) -> None:
        self.app = app
        self.environment = environment
        # Encoded once per policy: every answer carries them.
        self._encoded = {
            policy: [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers_for(path, environment)
            ]
            for policy, path in ((UI_CSP, "/ui"), (DOCS_CSP, "/docs"), (API_CSP, "/"))
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        fixed = self._encoded[policy_for(path)]
        authenticated = path.startswith("/v1/") or path == "/v1"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A header the answer sets itself is kept (`setdefault`); Cache-Control on an
                # authenticated answer is always no-store.
                headers = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if not (authenticated and name.lower() == b"cache-control")
                ]
                present = {name.lower() for name, _ in headers}
                headers += [header for header in fixed if header[0] not in present]
                if authenticated:
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
