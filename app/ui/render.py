"""Server-rendered pages: Jinja2 templates shipped inside the package, escaped by default."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from app.ui.campaign_view import hold_text

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

templates = Jinja2Templates(directory=TEMPLATES)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}"


templates.env.filters["when"] = _when
templates.env.filters["num"] = _count
templates.env.filters["hold"] = hold_text
templates.env.filters["pct"] = _percent


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    # Pages show live operational state and a CSRF token: never cache them.
    response.headers["Cache-Control"] = "no-store"
    return response


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
