"""REST: `/v1/image_to_video` (the seed's endpoint). Parse, call the service, shape the answer."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from stillmotion import jsonbody
from stillmotion.deps import ContextDep, CurrentPrincipal, authenticate, read_limited
from stillmotion.generations import creates, idempotency, reads, schemas, service
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
    # Like `read`, no FastAPI dependencies: the route authenticates itself.
    principal = await authenticate(request)
    ctx = request.app.state.ctx
    raw = await request.body()
    return await creates.run_create(
        request,
        principal,
        transport="rest",
        canonical=lambda: "POST /v1/image_to_video\n" + idempotency.canonical_json(raw),
        create=lambda record_id: _create(request, ctx, principal, raw, record_id),
        accepted=lambda payload: _accepted(ctx, payload),
    )


async def _create(request: Request, ctx, principal, raw: bytes, record_id: int | None) -> Response:
    body = jsonbody.loads(raw)
    strict = schemas.strict_requested(request.headers.get(schemas.STRICT_HEADER))
    gen_request = parse_request(body, prompt_required=True, strict=strict)
    payload = await service.submit(
        ctx=ctx, principal=principal, request=gen_request, idempotency_record=record_id
    )
    request.app.state.notify_workers()
    unknown = schemas.unknown_fields(body)
    return _accepted(ctx, payload, schemas.unknown_fields_warning(unknown) if unknown else None)


def _accepted(ctx, payload: dict[str, Any], warning: str | None = None) -> Response:
    headers = {"Location": f"{ctx.settings.public_url}/v1/image_to_video/{payload['id']}"}
    if warning:
        headers[schemas.WARNING_HEADER] = warning
    return Response(
        content=json.dumps(_wrap(payload)),
        status_code=202,
        media_type="application/json",
        headers=headers,
    )


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
    payload = await ctx.db.run(reads.poll_view, ctx, generation_id, principal)
    return Response(json.dumps(_wrap(payload)), media_type="application/json")


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
