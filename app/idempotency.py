"""Idempotency-Key for create calls: the same key and body give back the first answer;
the same key with another body is an error, never a second object."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.auth.principal import Principal
from app.campaigns.models import IdempotentRequest
from app.errors import FieldError, Problem

HEADER = "Idempotency-Key"


def _fingerprint(body: Any) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def run_once(
    session: AsyncSession,
    request: Request,
    principal: Principal,
    body: Any,
    create: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
    *,
    stored: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> JSONResponse:
    """Answer a creating request once per Idempotency-Key: a retry with the same key and body
    gets the first answer again (`Idempotent-Replayed: true`), another body 422.

    `stored` gives what is kept for replays when the first answer holds something that must be
    shown only once (a secret): the replay then carries the stored form, never the secret."""
    key = request.headers.get(HEADER)
    if key is None:
        status, payload = await create()
        return JSONResponse(payload, status_code=status)
    if not 1 <= len(key) <= 200:
        raise Problem(
            400,
            "Bad request",
            f"{HEADER} must be 1 to 200 characters",
            errors=[FieldError(f"header.{HEADER}", "must be 1 to 200 characters")],
        )
    route = request.url.path
    previous = await answered(session, principal, route, key)
    if previous is not None:
        if previous.request_hash != _fingerprint(body):
            raise Problem(
                422,
                "Idempotency-Key reused",
                f"{HEADER} {key!r} was already used with a different request body",
                errors=[FieldError(f"header.{HEADER}", "already used with another body")],
            )
        return JSONResponse(
            previous.response,
            status_code=previous.status_code,
            headers={"Idempotent-Replayed": "true"},
        )
    status, payload = await create()
    remember(session, principal, route, key, body, status, stored(payload) if stored else payload)
    try:
        await session.flush()
    except IntegrityError:
        raise Problem(
            409, "Conflict", f"a request with {HEADER} {key!r} is being processed; retry shortly"
        ) from None
    return JSONResponse(payload, status_code=status)


async def answered(
    session: AsyncSession, principal: Principal, route: str, key: str
) -> IdempotentRequest | None:
    """The remembered answer to `principal`'s request `key` on `route`, if there is one."""
    query = select(IdempotentRequest).where(
        col(IdempotentRequest.principal) == principal.actor,
        col(IdempotentRequest.route) == route,
        col(IdempotentRequest.key) == key,
    )
    return (await session.exec(query)).first()


def remember(
    session: AsyncSession,
    principal: Principal,
    route: str,
    key: str,
    body: Any,
    status: int,
    payload: dict[str, Any],
) -> None:
    """Remember an answer in the session's transaction: it exists only if what it answers
    was committed with it. A second request with the same key fails at the unique index."""
    session.add(
        IdempotentRequest(
            principal=principal.actor,
            key=key,
            route=route,
            request_hash=_fingerprint(body),
            status_code=status,
            response=payload,
        )
    )
