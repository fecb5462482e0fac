"""FastAPI dependencies as `Annotated` aliases, in one place."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from stillmotion import errors
from stillmotion.accounts import limits
from stillmotion.accounts import service as accounts
from stillmotion.accounts.service import Principal
from stillmotion.context import Context


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
    working within that second. When it is looked up again, the requests that arrive with it
    meanwhile wait for that one lookup (`_lookup_once`).
    """
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    ctx: Context = request.app.state.ctx
    key = api_key_from(request.headers)
    if not key:
        raise errors.Unauthenticated()
    principal = ctx.caches.keys.get(key)
    if principal is None:
        principal = await _lookup_once(request.app.state, ctx, key)
        ctx.caches.keys.put(key, principal)
    request.state.principal = principal
    return principal


async def _lookup_once(state, ctx: Context, key: str) -> Principal:
    """The key's principal, looked up by at most one request at a time.

    Without this, when a busy key's cache entry expired every request in flight missed it:
    200 polling connections started ~200 lookups a second, each holding a pool thread for
    several turns of the event loop (docs/benchmarks.md, "Polling beside creates")."""
    lookups: dict[str, asyncio.Future[Principal]] = state.__dict__.setdefault(
        "_principal_lookups", {}
    )
    lookup = lookups.get(key)
    if lookup is None:
        lookup = lookups[key] = asyncio.ensure_future(ctx.db.run(_lookup, ctx, key))
        lookup.add_done_callback(lambda done: _forget_lookup(lookups, key, done))
    # Shielded: one waiter going away must not cancel the lookup the others wait for.
    return await asyncio.shield(lookup)


def _forget_lookup(lookups: dict, key: str, done: asyncio.Future) -> None:
    lookups.pop(key, None)
    if not done.cancelled():
        done.exception()  # retrieved here, so a refusal nobody waited for is not logged


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
