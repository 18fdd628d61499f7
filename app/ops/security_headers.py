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

from starlette.types import Message

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
    """The headers above, encoded once per policy, stamped on each answer's start by the
    application's one middleware (`app.ops.edge.Edge`)."""

    def __init__(self, environment: str) -> None:
        self.environment = environment
        self._encoded = {
            policy: [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers_for(path, environment)
            ]
            for policy, path in ((UI_CSP, "/ui"), (DOCS_CSP, "/docs"), (API_CSP, "/"))
        }

    def for_path(self, path: str) -> tuple[list[tuple[bytes, bytes]], bool]:
        """The fixed headers for `path`, and whether its answers are authenticated ones."""
        return self._encoded[policy_for(path)], path.startswith("/v1/") or path == "/v1"

    @staticmethod
    def stamp(message: Message, fixed: list[tuple[bytes, bytes]], authenticated: bool) -> None:
        """Add the headers to an `http.response.start` message. A header the answer sets
        itself is kept; Cache-Control on an authenticated answer is always no-store."""
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
