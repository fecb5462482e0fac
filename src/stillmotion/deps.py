"""FastAPI dependencies as `Annotated` aliases, in one place."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from stillmotion import errors
from stillmotion.accounts import limits
from stillmotion.accounts import service as accounts
from stillmotion.accounts.service import Principal
from stillmotion.generations.service import Context


async def get_context(request: Request) -> Context:
    return request.app.state.ctx


def api_key_from(headers) -> str | None:
    """The key from `Authorization: Bearer KEY` or `X-API-Key: KEY` (API.md §1)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key else None


async def authenticate(request: Request) -> Principal:
    """The caller, from the request's key; cached on the request for later dependencies.

    A key seen in the last `STILLMOTION_AUTH_CACHE_SECONDS` (default 1 s) is not looked up
    again: under polling load this saves a database read per request, and a revoked key stops
    working within that second.
    """
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    ctx: Context = request.app.state.ctx
    key = api_key_from(request.headers)
    if not key:
        raise errors.Unauthenticated()
    cache: dict[str, tuple[float, Principal]] = request.app.state.__dict__.setdefault(
        "_principals", {}
    )
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and hit[0] > now:
        principal = hit[1]
    else:
        principal = await run_in_threadpool(_lookup, ctx, key)
        ttl = ctx.settings.auth_cache_seconds
        if ttl > 0:
            if len(cache) >= 10_000:
                cache.clear()
            cache[key] = (now + ttl, principal)
    request.state.principal = principal
    return principal


def _lookup(ctx: Context, key: str) -> Principal:
    with ctx.db.session() as session:
        return accounts.authenticate(session=session, key=key)


async def read_limited(request: Request) -> Principal:
    """The caller, counted against the per-key read limit (429 `RATE_LIMITED` over it).

    One dependency rather than two nested ones: on the polling path FastAPI's dependency
    resolution is a measurable share of the request. Routes may also call it directly.
    """
    principal = await authenticate(request)
    await limits.check_read(
        limiter=request.app.state.limiter, scope=request.scope, principal=principal
    )
    return principal


def require_admin(principal: Annotated[Principal, Depends(read_limited)]) -> Principal:
    if not principal.is_admin:
        raise errors.Forbidden()
    return principal


ContextDep = Annotated[Context, Depends(get_context)]
# Every authenticated route but the creates: counted as a read (accounts/limits.py).
CurrentPrincipal = Annotated[Principal, Depends(read_limited)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
