"""Creating, reading, listing and cancelling generations: the rules live here, once.

`submit` resolves and stores the source image first (no database lock is held while a URL is
fetched), then creates the job and charges for it in one transaction: an accepted job is never
lost and never charged twice.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from pydantic.alias_generators import to_camel
from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from stillmotion import errors, net, options
from stillmotion.accounts.service import Principal
from stillmotion.config import Settings
from stillmotion.context import Context
from stillmotion.credits import service as credits
from stillmotion.db import new_id, utcnow
from stillmotion.engine import brush, output_size, validate_camera
from stillmotion.generations import events, idempotency, lifecycle, quota
from stillmotion.generations.models import Generation
from stillmotion.generations.schemas import GenerateRequest
from stillmotion.generations.states import Status
from stillmotion.generations.views import to_api
from stillmotion.services.catalogue import Catalogue, ProviderKind, ServiceSpec
from stillmotion.storage import Storage
from stillmotion.uploads import service as uploads

STATUSES = tuple(Status)

# The options a service may not take (`ServiceSpec.options`), by the catalogue's names: whether a
# request asks for one. `end_frame` is no request field yet.
_ASKS_FOR = {
    "camera": lambda r: r.camera is not None,
    "motion_brush": lambda r: r.motion_brush is not None,
    "loop": lambda r: r.loop,
    "seed": lambda r: r.seed is not None,
}


def resolve_service(
    request: GenerateRequest, catalogue: Catalogue
) -> tuple[ServiceSpec, GenerateRequest]:
    """The request's service, and the request held to it: an unknown service, a version,
    aspect ratio or duration the service does not offer, or an option it does not take is a
    `ValidationFailed` naming the field and the service (never silently ignored). A version,
    aspect ratio or duration the request left unset whose API default the service does not
    offer becomes the service's own (its first version and aspect ratio, its duration nearest
    the default)."""
    spec = catalogue.get(request.service)
    if spec is None:
        raise errors.ValidationFailed(
            f"service: unknown service {errors.quote(request.service)}; "
            f"known: {', '.join(catalogue.ids)}",
            field="service",
        )
    sent = request.model_fields_set
    defaults: dict[str, Any] = {}
    if "version" not in sent and request.version not in spec.versions:
        defaults["version"] = spec.versions[0]
    if "aspect_ratio" not in sent and request.aspect_ratio not in spec.aspect_ratios:
        defaults["aspect_ratio"] = spec.aspect_ratios[0]
    if "duration" not in sent and request.duration not in spec.durations:
        wanted = request.duration
        defaults["duration"] = min(spec.durations, key=lambda d: (abs(d - wanted), d))
    if defaults:
        request = request.model_copy(update=defaults)
    where = f"service {spec.id!r}"
    if request.version not in spec.versions:
        raise errors.ValidationFailed(
            f"version: {request.version!r} is not a version of {where} "
            f"(its versions: {', '.join(spec.versions)})",
            field="version",
        )
    if request.aspect_ratio not in spec.aspect_ratios:
        raise errors.ValidationFailed(
            f"aspectRatio: {request.aspect_ratio!r} is not an aspect ratio of {where} "
            f"(its aspect ratios: {', '.join(spec.aspect_ratios)})",
            field="aspectRatio",
        )
    if request.duration not in spec.durations:
        raise errors.ValidationFailed(
            f"duration: {request.duration} s is not a duration of {where} "
            f"(its durations: {_seconds(spec.durations)})",
            field="duration",
        )
    for option, asks_for in _ASKS_FOR.items():
        if option not in spec.options and asks_for(request):
            name = to_camel(option)
            takes = ", ".join(to_camel(o) for o in _ASKS_FOR if o in spec.options)
            raise errors.ValidationFailed(
                f"{name}: {where} does not take {name} "
                f"({'it takes ' + takes if takes else 'it takes none of the options'})",
                field=name,
            )
    if request.width is not None and spec.provider is not ProviderKind.LOCAL:
        raise errors.ValidationFailed(
            f"width: {where} renders its provider's own sizes; width and height are for "
            "services of the built-in engine",
            field="width",
        )
    return spec, request


def _seconds(durations: tuple[int, ...]) -> str:
    """Durations as a refusal lists them: `2 … 10` for a run, else `4, 6, 8`."""
    run = tuple(range(durations[0], durations[-1] + 1))
    if len(durations) > 2 and durations == run:
        return f"{durations[0]} … {durations[-1]}"
    return ", ".join(map(str, durations))


def check_request(request: GenerateRequest, *, settings: Settings) -> None:
    """Rules beyond the schema's: brush regions decode, the webhook URL is well formed."""
    if request.camera:
        try:
            validate_camera(request.camera.model_dump())
        except ValueError as exc:
            raise errors.ValidationFailed(f"camera: {exc}", field="camera") from None
    if request.motion_brush:
        try:
            brush.parse_regions([r.model_dump() for r in request.motion_brush])
        except ValueError as exc:
            raise errors.ValidationFailed(str(exc), field="motionBrush") from None
    if request.webhook_url:
        try:
            net.check_url_syntax(request.webhook_url)
        except errors.UrlNotAllowed as exc:
            raise exc.about("webhookUrl") from None


@functools.cache
def _intake_pool(threads: int) -> ThreadPoolExecutor:
    """The threads that check and store source images. Decoding releases the GIL, so it runs
    beside the event loop, but more decoding threads than CPUs would only take CPU time from
    the loop (and make latency uneven): waiting checks queue in the pool, in order. A thread
    that finishes takes the next check itself; with anyio's `CapacityLimiter` each hand-over
    went through the event loop, one create per turn of it, and beside 200 polling
    connections a turn took ~30 ms (docs/benchmarks.md, "Polling beside creates")."""
    return ThreadPoolExecutor(threads or os.cpu_count() or 1, thread_name_prefix="intake")


_INSERT = insert(Generation.__table__)
# A new row: every column, with the model's constant defaults (status, stage, progress, …).
_NEW_ROW = {
    c.name: c.default.arg if c.default is not None and c.default.is_scalar else None
    for c in Generation.__table__.columns
}


async def submit(
    *,
    ctx: Context,
    principal: Principal,
    request: GenerateRequest,
    idempotency_record: int | None = None,
) -> dict[str, Any]:
    """Accept a generation: check, fetch and store the image, then create and charge the job.

    `idempotency_record`: the request's `Idempotency-Key` record, noted on the job in the
    job's own transaction (the recovery point). Returns the job's API view (§3) as of the
    accepting transaction."""
    settings = ctx.settings
    spec, request = resolve_service(request, ctx.catalogue)
    available, reason = ctx.providers.availability(spec)
    if not available:
        raise errors.Unavailable(f"service {spec.id!r} cannot take jobs now: {reason}")
    check_request(request, settings=settings)
    if request.webhook_url:
        # Resolve now so a URL pointing inward is refused before anything is charged.
        try:
            await run_in_threadpool(
                net.check_url, request.webhook_url, allow_networks=settings.networks
            )
        except net.DeliveryError as exc:
            raise errors.ValidationFailed(f"webhookUrl: {exc}", field="webhookUrl") from None
        except errors.UrlNotAllowed as exc:
            raise exc.about("webhookUrl") from None
    source = await uploads.resolve_source(
        db=ctx.db,
        settings=settings,
        storage=ctx.storage,
        account_id=principal.account_id,
        ref=request.source,
        field=request.source_field,
    )
    # The image is decoded (which releases the GIL, so it runs beside the event loop) and
    # written in a worker thread.
    stored = source.stored or await asyncio.get_running_loop().run_in_executor(
        _intake_pool(settings.intake_threads),
        functools.partial(uploads.store_source, source, storage=ctx.storage, settings=settings),
    )
    return await ctx.db.run(_accept, ctx, principal, request, spec, stored, idempotency_record)


def _accept(
    ctx: Context,
    principal: Principal,
    request: GenerateRequest,
    spec: ServiceSpec,
    stored: uploads.StoredImage,
    record_id: int | None,
) -> dict[str, Any]:
    """Create and charge the job in one transaction, noting it on the request's idempotency
    record (`record_id`) if it has one; return its view."""
    settings = ctx.settings
    width, height = (
        (request.width, request.height)
        if request.width is not None
        else output_size(request.version, request.aspect_ratio)
    )
    cost = credits.price(
        settings=settings,
        version=request.version,
        duration=request.duration,
        motion_brush=bool(request.motion_brush),
        spec=spec,
    )
    row = dict(_NEW_ROW)
    row.update(request.option_values())
    if row["seed"] is None:
        row["seed"] = secrets.randbelow(options.SEED_MAX + 1)
    row.update(
        id=new_id("gen"),
        account_id=principal.account_id,
        service=request.service,
        provider=spec.provider.value,
        webhook_url=request.webhook_url,
        credit_cost=cost,
        source_key=stored.key,
        width=width,
        height=height,
        created_at=utcnow(),
    )
    with ctx.db.session(write=True) as session:
        # The daily cap locks the account row and counts today's jobs; the charge is a
        # conditional UPDATE that may also record a low-credit crossing; then the job row.
        # One transaction, in Core statements built once (this is the hottest write path).
        plan = quota.check_daily(session, account_id=principal.account_id)
        charged = credits.charge(
            session=session,
            account_id=principal.account_id,
            amount=cost,
            generation_id=row["id"],
            settings=settings,
        )
        events.credits_low(session=session, crossing=charged.credits_low)
        session.connection().execute(_INSERT, row)
        idempotency.mark_created(session.connection(), record_id=record_id, generation_id=row["id"])
        # The answer is built here, from the row in hand and the account already locked, so
        # the create needs no second read and reports the queue as it stood at acceptance.
        return to_api(
            SimpleNamespace(**row), session=session, storage=ctx.storage, concurrent=plan.concurrent
        )


def get(*, session: Session, principal: Principal, generation_id: str) -> Generation:
    """The caller's generation; another account's id is 404, as an unknown one is."""
    if not isinstance(generation_id, str):
        raise errors.NotFound(f"no generation {errors.quote(generation_id)}")
    gen = session.get(Generation, errors.check_text(generation_id, field="id"))
    if gen is None or gen.account_id != principal.account_id:
        raise errors.NotFound(f"no generation {errors.quote(generation_id)}")
    return gen


def _encode_cursor(gen: Generation) -> str:
    raw = json.dumps([gen.created_at.isoformat(), gen.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, gen_id = json.loads(raw)
        return str(created), str(gen_id)
    except Exception:
        raise errors.ValidationFailed("invalid cursor", field="cursor") from None


def list_generations(
    *,
    session: Session,
    principal: Principal,
    status: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[Generation], str | None]:
    """The caller's generations, newest first, and the cursor of the next page (or None)."""
    from datetime import datetime

    if status is not None and status not in STATUSES:
        raise errors.ValidationFailed(
            f"status must be one of {', '.join(STATUSES)}", field="status"
        )
    if not 1 <= limit <= 100:
        raise errors.ValidationFailed("limit must be 1 … 100", field="limit")
    query = select(Generation).where(Generation.account_id == principal.account_id)
    if status:
        query = query.where(Generation.status == status)
    if cursor:
        created, gen_id = _decode_cursor(cursor)
        try:
            created_at = datetime.fromisoformat(created)
        except ValueError:
            raise errors.ValidationFailed("invalid cursor", field="cursor") from None
        if created_at.tzinfo is None:
            raise errors.ValidationFailed("invalid cursor", field="cursor")
        query = query.where(
            (Generation.created_at < created_at)
            | ((Generation.created_at == created_at) & (Generation.id < gen_id))
        )
    rows = list(
        session.scalars(
            query.order_by(Generation.created_at.desc(), Generation.id.desc()).limit(limit + 1)
        )
    )
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def cancel(
    *, session: Session, storage: Storage, principal: Principal, generation_id: str
) -> Generation:
    """Cancel an unfinished job and refund it; a finished one is `AlreadyFinished`.

    The state change is a conditional UPDATE, so a cancel racing the worker's completion has
    exactly one winner, and only the cancel that won refunds.
    """
    gen = get(session=session, principal=principal, generation_id=generation_id)
    if not lifecycle.fail_or_cancel(
        session=session,
        storage=storage,
        generation_id=gen.id,
        status=Status.CANCELLED,
        owner=None,
        error_code=None,
        error_message=None,
    ):
        session.refresh(gen)
        raise errors.AlreadyFinished(f"generation {gen.id} is already {gen.status}")
    session.refresh(gen)
    return gen
