"""How a create request runs, for every REST-shaped transport (the native `/v1/image_to_video`
and the Runway-compatible `/runway/v1/image_to_video`): its `Idempotency-Key` (`idempotency`),
its count against the per-minute window (`admission`), then the create itself, a replay or a
recovery, and the response stored for the key. The transports differ only in how they parse,
how they answer an accepted job, and the shape of their error bodies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from stillmotion import errors
from stillmotion.accounts.service import Principal
from stillmotion.generations import admission, idempotency, reads


async def run_create(
    request: Request,
    principal: Principal,
    *,
    transport: str,
    canonical: Callable[[], str],
    create: Callable[[int | None], Awaitable[Response]],
    accepted: Callable[[dict[str, Any]], Response],
    error_response: Callable[[errors.StillmotionError], Response] = idempotency.error_response,
) -> Response:
    """Run one create. `create(record_id)`: parse the body, submit, answer (its record id goes to
    `service.submit`); `accepted(view)`: the answer for a job a dead request created (a
    recovery); `error_response`: the transport's body for a domain error, stored for the key
    like any answer. A refusal before the key's record exists is raised, not answered."""
    ctx = request.app.state.ctx
    try:
        outcome = await idempotency.begin_request(
            request=request,
            db=ctx.db,
            account_id=principal.account_id,
            transport=transport,
            canonical=canonical,
        )
    except errors.StillmotionError:
        await admission.admit(request, principal, None)
        raise
    if isinstance(outcome, idempotency.Replay):
        await admission.admit(request, principal, outcome)
        return outcome.response()
    try:
        # A fresh create counts here, before its body is validated (admission.py).
        await admission.admit(request, principal, outcome)
        if isinstance(outcome, idempotency.Recover):
            # The job exists (its request died before the response was stored): answer as the
            # create would have, with the job as it is now.
            payload = await ctx.db.run(reads.view, ctx, outcome.generation_id, principal)
            response = accepted(payload)
        else:
            response = await create(outcome.record_id)
    except errors.StillmotionError as exc:
        response = error_response(exc)
    except BaseException:
        await ctx.db.run(idempotency.abandon, db=ctx.db, outcome=outcome)
        raise
    return await idempotency.settle(db=ctx.db, outcome=outcome, response=response)
