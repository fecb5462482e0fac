"""REST: the Runway-compatible surface under `/runway` (Runway's paths, bodies and errors), so
that Runway's own SDKs work with `base_url="http://HOST/runway"`. Transport only: it parses
Runway's body into the one `GenerateRequest` and calls the same service functions as
`/v1/image_to_video` (docs/api.md, "Runway-compatible surface")."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from stillmotion import errors, jsonbody
from stillmotion.accounts import views as account_views
from stillmotion.accounts.service import Principal
from stillmotion.deps import authenticate, read_limited
from stillmotion.generations import creates, idempotency, reads, service
from stillmotion.generations.schemas import GenerateRequest, parse_request
from stillmotion.runway_api import mapping
from stillmotion.runway_api.mapping import EXTENSION, Model

router = APIRouter(prefix="/runway", tags=["runway"])

EXTENSION_FIELDS = frozenset({"webhookUrl", "camera", "motionBrush", "loop"})
_PATH_DOC = {"parameters": [{"name": "id", "in": "path", "required": True, "schema": {}}]}


def _api_version(request: Request) -> str:
    value = request.headers.get(mapping.VERSION_HEADER)
    if value is None:
        raise errors.BadRequest(
            f"The X-Runway-Version header is required (use {mapping.VERSION_CURRENT})"
        )
    if value not in mapping.VERSIONS:
        raise errors.BadRequest(
            f"Unsupported X-Runway-Version {errors.quote(value)}; "
            f"supported: {', '.join(mapping.VERSIONS)}"
        )
    return value


async def _reader(request: Request) -> Principal:
    """The caller of a read (counted against the read limit), once the version is checked."""
    principal = await read_limited(request)
    _api_version(request)
    return principal


# --- POST /v1/image_to_video ----------------------------------------------------------------


@router.post(
    "/v1/image_to_video",
    summary="Runway: start an image-to-video task",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
async def create(request: Request) -> Response:
    try:
        principal = await authenticate(request)
        api_version = _api_version(request)
        ctx = request.app.state.ctx
        raw = await request.body()

        async def run(record_id: int | None) -> Response:
            gen_request = _generate_request(jsonbody.loads(raw), api_version=api_version)
            payload = await service.submit(
                ctx=ctx, principal=principal, request=gen_request, idempotency_record=record_id
            )
            request.app.state.notify_workers()
            return _accepted(payload)

        return await creates.run_create(
            request,
            principal,
            transport="runway",
            canonical=lambda: (
                f"POST /runway/v1/image_to_video\n{api_version}\n" + idempotency.canonical_json(raw)
            ),
            create=run,
            accepted=_accepted,
            error_response=mapping.error_response,
        )
    except errors.StillmotionError as exc:
        return mapping.error_response(exc)


def _accepted(payload: dict[str, Any]) -> Response:
    body = {"id": payload["id"], "estimatedCost": {"credits": payload["creditCost"]}}
    return Response(json.dumps(body), media_type="application/json")


def _invalid(name: str, detail: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(f"Invalid parameter '{name}': {detail}", field=name)


def _generate_request(body: Any, *, api_version: str) -> GenerateRequest:
    """Runway's body as our `GenerateRequest` (the schema then checks every value)."""
    if not isinstance(body, dict):
        raise errors.BadRequest("The request body must be a JSON object")
    model = mapping.model_for(body.get("model"))
    data: dict[str, Any] = {
        "service": model.service,
        "version": model.version,
        "imageUrl": _prompt_image(body.get("promptImage")),
        "duration": _duration(model, body.get("duration")),
    }
    width, height = mapping.pixel_size(model, body.get("ratio"), api_version=api_version)
    data.update(width=width, height=height, aspectRatio=mapping.nearest_aspect(width, height))
    text = body.get("promptText")
    if text is not None:
        if not isinstance(text, str):
            raise _invalid("promptText", "must be a string")
        data["prompt"] = text
    elif model.prompt_required:
        raise _invalid("promptText", "is required for this model")
    if "seed" in body:
        data["seed"] = body["seed"]
    moderation = body.get("contentModeration")
    if moderation is not None and (
        not isinstance(moderation, dict)
        or moderation.get("publicFigureThreshold", "auto") not in ("auto", "low")
    ):
        raise _invalid("contentModeration", "publicFigureThreshold must be 'auto' or 'low'")
    data.update(_extension(body.get(EXTENSION)))
    return parse_request(data)


def _prompt_image(value: Any) -> str:
    if isinstance(value, list):
        firsts = []
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("uri"), str):
                raise _invalid("promptImage", "each item must be an object with a 'uri' string")
            position = item.get("position", "first")
            if position == "last":
                raise _invalid("promptImage", "position 'last' (an end frame) is not supported")
            if position != "first":
                raise _invalid("promptImage", "position must be 'first' or 'last'")
            firsts.append(item["uri"])
        if len(firsts) != 1:
            raise _invalid("promptImage", "exactly one image with position 'first' is required")
        value = firsts[0]
    if not isinstance(value, str) or not value:
        raise _invalid("promptImage", "an image URI is required")
    scheme = value.partition(":")[0].lower()
    if scheme in ("https", "data", "upload"):
        return value
    if scheme == "http":
        raise _invalid("promptImage", "Only HTTPS URLs are allowed")
    raise _invalid("promptImage", "must be an https:// URL or a data: URI")


def _duration(model: Model, value: Any) -> int:
    if value is None:
        if model.default_duration is None:
            raise _invalid("duration", "is required for this model")
        return model.default_duration
    if isinstance(value, bool) or not isinstance(value, int) or value not in model.durations:
        allowed = ", ".join(str(d) for d in model.durations)
        raise _invalid("duration", f"{errors.quote(value)} is not allowed; allowed: {allowed}")
    return value


def _extension(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(EXTENSION, "must be an object")
    unknown = sorted(set(value) - EXTENSION_FIELDS)
    if unknown:
        known = ", ".join(sorted(EXTENSION_FIELDS))
        raise _invalid(EXTENSION, f"unknown field {errors.quote(unknown[0])}; known: {known}")
    return value


# --- tasks ------------------------------------------------------------------------------------


@router.get(
    "/v1/tasks/{id}",
    summary="Runway: read a task",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
    openapi_extra=_PATH_DOC,
)
async def read_task(request: Request) -> Response:
    # Kept as lean as the native polling path: the same read (`reads.poll_view`), one
    # dictionary rebuilt.
    try:
        principal = await _reader(request)
        ctx = request.app.state.ctx
        view = await ctx.db.run(reads.poll_view, ctx, request.path_params["id"], principal)
    except errors.StillmotionError as exc:
        return mapping.error_response(exc)
    return Response(json.dumps(mapping.task(view)), media_type="application/json")


@router.delete(
    "/v1/tasks/{id}",
    summary="Runway: cancel a task (refunded), or delete a finished one (kept: a no-op)",
    status_code=204,
    response_class=Response,
    openapi_extra=_PATH_DOC,
)
async def delete_task(request: Request) -> Response:
    try:
        principal = await _reader(request)
        ctx = request.app.state.ctx
        await run_in_threadpool(_cancel, ctx, principal, request.path_params["id"])
    except errors.StillmotionError as exc:
        return mapping.error_response(exc)
    return Response(status_code=204)


def _cancel(ctx, principal: Principal, task_id: str) -> None:
    errors.check_text(task_id, field="id")
    # A finished task is kept: its output and ledger stay as they are.
    with contextlib.suppress(errors.AlreadyFinished), ctx.db.session(write=True) as session:
        service.cancel(
            session=session, storage=ctx.storage, principal=principal, generation_id=task_id
        )


# --- organization -----------------------------------------------------------------------------


@router.get(
    "/v1/organization",
    summary="Runway: credits, the plan's limits per model, today's usage",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
async def organization(request: Request) -> Response:
    try:
        principal = await _reader(request)
        ctx = request.app.state.ctx
        body = await run_in_threadpool(_organization, ctx, principal)
    except errors.StillmotionError as exc:
        return mapping.error_response(exc)
    return Response(json.dumps(body), media_type="application/json")


def _organization(ctx, principal: Principal) -> dict[str, Any]:
    with ctx.db.session() as session:
        account = account_views.account_view(
            session=session, ctx=ctx, account_id=principal.account_id
        )
    limits, today = account["limits"], account["usage"]["generationsToday"]
    # Our limits are the account's, shared by every model: each model shows the same numbers.
    return {
        "creditBalance": account["creditBalance"],
        "tier": {
            "maxMonthlyCreditSpend": None,  # no monthly cap here (null: no limit)
            "models": {
                name: {
                    "maxConcurrentGenerations": limits["concurrentJobs"],
                    "maxDailyGenerations": limits["generationsPerDay"],
                }
                for name in mapping.MODELS
            },
        },
        "usage": {"models": {name: {"dailyGenerations": today} for name in mapping.MODELS}},
    }


# --- anything else under /runway: Runway's error shape ------------------------------------------

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@router.api_route("/{path:path}", methods=list(_METHODS), include_in_schema=False)
async def not_found(request: Request) -> Response:
    others = [
        method
        for method in _METHODS
        if method != request.method
        and any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            and getattr(route, "endpoint", None) is not not_found
            for route in router.routes
        )
    ]
    if others:
        exc: errors.StillmotionError = errors.MethodNotAllowed(allow=", ".join(others))
        response = mapping.error_response(exc)
        response.headers["Allow"] = ", ".join(others)
        return response
    return mapping.error_response(errors.NotFound("Not found"))
