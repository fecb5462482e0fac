"""FastAPI dependencies as `Annotated` aliases, in one place."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from stillmotion import errors
from stillmotion.accounts import limits
from stillmotion.accounts import service as accounts
from stillmotion.accounts.service import Principal
from stillmotion.generations.service import Context


def get_context(request: Request) -> Context:
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


def authenticate(request: Request) -> Principal:
    """The caller, from the request's key; cached on the request for later dependencies."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    ctx: Context = request.app.state.ctx
    key = api_key_from(request.headers)
    if not key:
        raise errors.Unauthenticated()
    with ctx.db.session() as session:
        principal = accounts.authenticate(session=session, key=key)
    request.state.principal = principal
    return principal


async def read_limited(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Principal:
    """The caller, counted against the per-key read limit (429 `RATE_LIMITED` over it)."""
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
# Create routes: authenticated only; the route counts the create after its idempotency check.
CreatePrincipal = Annotated[Principal, Depends(authenticate)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
