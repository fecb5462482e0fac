"""When a create request counts against its account's per-minute window: decided here, once,
for every transport.

A create counts when it is executed — with no `Idempotency-Key`, or as the first request under
its key — and it counts before its body is validated (the seed counts "generation requests",
and this keeps invalid requests from fetching images without limit). A request answered from
its key (a replay, a 409 while the first runs, a 422 for another body, a recovery after a
crash) created nothing: it only reports the window in its response headers.
"""

from __future__ import annotations

from starlette.requests import Request

from stillmotion.accounts import limits
from stillmotion.accounts.plans import plan_limits
from stillmotion.accounts.service import Principal
from stillmotion.generations import idempotency


async def admit(
    request: Request, principal: Principal, outcome: idempotency.Outcome | None
) -> None:
    """Count the create (`Fresh`), or only report its window (any other outcome, or None when
    the key's check refused the request). Raises `RateLimited` when a counted create is over."""
    ctx, limiter = request.app.state.ctx, request.app.state.limiter
    plan = await plan_limits(ctx, account_id=principal.account_id)
    if isinstance(outcome, idempotency.Fresh):
        await limits.check_create(
            limiter=limiter, scope=request.scope, principal=principal, plan=plan
        )
    else:
        await limits.peek_create(
            limiter=limiter, scope=request.scope, principal=principal, plan=plan
        )
