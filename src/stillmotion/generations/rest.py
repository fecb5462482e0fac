"""REST: `/v1/image_to_video` (the seed's endpoint). Parse, call the service, shape the answer."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from stillmotion import errors
from stillmotion.accounts import limits
from stillmotion.deps import ContextDep, CurrentPrincipal, authenticate, read_limited
from stillmotion.generations import idempotency, service
from stillmotion.generations.models import Generation
from stillmotion.generations.schemas import GenerateRequest, parse_request
from stillmotion.generations.views import to_api

router = APIRouter(prefix="/v1/image_to_video", tags=["image_to_video"])

_EXAMPLE = {
    "service": "runway-i2v",
    "prompt": "slow push in, golden hour",
    "imageUrl": "https://example.com/your-image.jpg",
    "duration": 5,
    "aspectRatio": "16:9",
    "version": "gen-3",
}


def _wrap(data: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"imagevideo": data}}


@router.post(
    "",
    status_code=202,
    summary="Create a generation",
    responses={202: {"description": "Accepted; poll the Location or wait for the webhook"}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": GenerateRequest.model_json_schema(by_alias=True),
                    "example": _EXAMPLE,
                }
            },
            "required": True,
        }
    },
)
async def create(request: Request) -> Response:
    # Like `read`, no FastAPI dependencies: the route authenticates itself (the create is
    # counted after its idempotency check, below).
    principal = await authenticate(request)
    ctx = request.app.state.ctx
    raw = await request.body()
    limiter = request.app.state.limiter
    plan = await limits.plan_limits(
        state=request.app.state, db=ctx.db, account_id=principal.account_id
    )

    async def handle() -> Response:
        # Counted before validation: a bad request is still a create request (limits.py).
        await limits.check_create(
            limiter=limiter, scope=request.scope, principal=principal, limits=plan
        )
        return await _create(request, ctx, principal, raw)

    async def peek() -> None:
        await limits.peek_create(
            limiter=limiter, scope=request.scope, principal=principal, limits=plan
        )

    async def recover(gen_id: str) -> Response:
        # The job exists (its request died before the response was stored): answer as the
        # create would have, with the job as it is now.
        payload = await ctx.db.run(_view, ctx, gen_id, principal)
        return _accepted(ctx, payload)

    return await idempotency.run(
        request=request,
        db=ctx.db,
        account_id=principal.account_id,
        transport="rest",
        canonical=lambda: "POST /v1/image_to_video\n" + idempotency.canonical_json(raw),
        handler=handle,
        recover=recover,
        on_short_circuit=peek,
    )


async def _create(request: Request, ctx, principal, raw: bytes) -> Response:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise errors.BadRequest("the request body is not valid JSON") from None
    gen_request = parse_request(body, prompt_required=True)
    payload = await service.submit(ctx=ctx, principal=principal, request=gen_request)
    request.app.state.notify_workers()
    return _accepted(ctx, payload)


def _accepted(ctx, payload: dict[str, Any]) -> Response:
    return Response(
        content=json.dumps(_wrap(payload)),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"{ctx.settings.public_url}/v1/image_to_video/{payload['id']}"},
    )


def _view(ctx, gen_id: str, principal) -> dict[str, Any]:
    with ctx.db.session() as session:
        gen = service.get(session=session, principal=principal, generation_id=gen_id)
        return to_api(gen, session=session, storage=ctx.storage)


@router.get(
    "/{generation_id}",
    summary="Read a generation",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
    openapi_extra={
        "parameters": [
            {"name": "generation_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    },
)
async def read(request: Request) -> Response:
    # The polling path, kept lean: no FastAPI dependencies or parameter parsing (the path
    # parameter is declared for OpenAPI above), one call for auth and the read limit, and on
    # SQLite the read runs on the event loop (`Database.run`: ~100 µs of CPU in this process).
    generation_id = request.path_params["generation_id"]
    principal = await read_limited(request)
    ctx = request.app.state.ctx
    payload = await ctx.db.run(_read_view, ctx, generation_id, principal)
    return Response(json.dumps(_wrap(payload)), media_type="application/json")


QUEUED_VIEW_SECONDS = 0.5


class _RowReader:
    """One generation row by id, without an ORM session or Core statement execution.

    SQLite only: a pooled DBAPI connection (autocommit, so a lone SELECT needs no BEGIN), the
    statement text made once, and SQLAlchemy's own result processors per column, so values
    come back exactly as the ORM would give them (aware datetimes, JSON).
    """

    def __init__(self, db) -> None:
        table = Generation.__table__
        dialect = db.engine.dialect
        quote = dialect.identifier_preparer.quote
        self.sql = (
            f"SELECT {', '.join(quote(c.name) for c in table.columns)} "
            f"FROM {quote(table.name)} WHERE {quote('id')} = ?"
        )
        self.columns = [
            (c.name, c.type._cached_result_processor(dialect, None)) for c in table.columns
        ]
        self.connection = None

    def get(self, db, gen_id: str) -> SimpleNamespace | None:
        """Call it from the event loop only: it keeps one connection for that thread."""
        if self.connection is None:
            # Out of the pool for good: a pool checkout costs as much as the query.
            fairy = db.engine.raw_connection()
            fairy.detach()
            self.connection = fairy.dbapi_connection
        values = self.connection.execute(self.sql, (gen_id,)).fetchone()
        if values is None:
            return None
        return SimpleNamespace(
            **{
                name: process(value) if process else value
                for (name, process), value in zip(self.columns, values, strict=True)
            }
        )


def _read_view(ctx, gen_id: str, principal) -> dict[str, Any]:
    """`_view` for a started or finished job, whose public shape needs nothing but its row,
    read without an ORM session on SQLite; a queued job takes the full path, which counts the
    jobs ahead of it for `stage` and `queuePosition`."""
    if ctx.db.is_sqlite:
        reader = ctx.db.__dict__.get("_row_reader") or ctx.db.__dict__.setdefault(
            "_row_reader", _RowReader(ctx.db)
        )
        row = reader.get(ctx.db, gen_id)
    else:
        with ctx.db.session() as session:
            row = session.get(Generation, gen_id)
            if row is not None:
                session.expunge(row)
    if row is None or row.account_id != principal.account_id:
        raise errors.NotFound(f"no generation {gen_id!r}")
    if row.status == "processing" and row.stage == "queued":
        # Whether it is `throttled` and its `queuePosition` take counts over the queue; a
        # poller gets them at most QUEUED_VIEW_SECONDS old. Anything the row itself says (it
        # started, was cancelled) is never stale: the row is read first, every time.
        cache = ctx.db.__dict__.setdefault("_queued_views", {})
        now = time.monotonic()
        hit = cache.get(gen_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        payload = _view(ctx, gen_id, principal)
        if len(cache) >= 10_000:
            cache.clear()
        cache[gen_id] = (now + QUEUED_VIEW_SECONDS, payload)
        return payload
    return to_api(row, session=None, storage=ctx.storage)


@router.get("", summary="List generations, newest first")
def list_(
    ctx: ContextDep,
    principal: CurrentPrincipal,
    status: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = 20,
    cursor: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    with ctx.db.session() as session:
        rows, next_cursor = service.list_generations(
            session=session, principal=principal, status=status, limit=limit, cursor=cursor
        )
        items = [to_api(g, session=session, storage=ctx.storage) for g in rows]
    return {"data": {"imagevideos": items, "nextCursor": next_cursor}}


@router.delete("/{generation_id}", summary="Cancel a generation (refunds its credits)")
def cancel(generation_id: str, ctx: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    with ctx.db.session(write=True) as session:
        gen = service.cancel(
            session=session,
            storage=ctx.storage,
            principal=principal,
            generation_id=generation_id,
        )
        return _wrap(to_api(gen, session=session, storage=ctx.storage))
