"""GraphQL: `generate`, `animateImage`, `cancelGeneration`, `generation`, `generations`.

Each resolver turns its input into the one `GenerateRequest` and calls the same service
functions as REST; the generation type is built from the same `to_api` dict.
"""

from __future__ import annotations

import functools
from enum import Enum
from types import UnionType
from typing import Any, Literal, NewType, Union, get_args, get_origin

import strawberry
from pydantic.fields import FieldInfo
from starlette.concurrency import run_in_threadpool
from strawberry.scalars import JSON
from strawberry.types import Info

from stillmotion.generations import service
from stillmotion.generations.schemas import GenerationOptions, parse_request
from stillmotion.generations.views import to_api

# GraphQL's Int is 32-bit; seeds go to 2^32−1. The scalar itself is declared in graphql.py.
BigInt = NewType("BigInt", int)


@strawberry.enum
class GenerationType(Enum):
    VIDEO = "VIDEO"


@strawberry.type
class GenerationError:
    code: str
    message: str


@strawberry.type
class Generation:
    id: strawberry.ID
    status: str
    type: GenerationType
    provider: str
    service: str
    url: str | None
    poster_url: str | None
    progress: float
    stage: str
    queue_position: int | None
    credit_cost: int
    webhook_url: str | None
    prompt: str
    created_at: str
    started_at: str | None
    completed_at: str | None
    duration: int
    metadata: JSON
    error: GenerationError | None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Generation:
        return cls(
            id=strawberry.ID(d["id"]),
            status=d["status"],
            type=GenerationType.VIDEO,
            provider=d["provider"],
            service=d["service"],
            url=d["url"],
            poster_url=d["posterUrl"],
            progress=d["progress"],
            stage=d["stage"],
            queue_position=d["queuePosition"],
            credit_cost=d["creditCost"],
            webhook_url=d["webhookUrl"],
            prompt=d["prompt"],
            created_at=d["createdAt"],
            started_at=d["startedAt"],
            completed_at=d["completedAt"],
            duration=d["duration"],
            metadata=d["metadata"],
            error=GenerationError(**d["error"]) if d["error"] else None,
        )


@strawberry.type
class GenerationConnection:
    nodes: list[Generation]
    end_cursor: str | None
    has_next_page: bool


def _graphql_type(field: FieldInfo) -> Any:
    """The GraphQL input type of one option, from its declaration: integers whose range goes
    past GraphQL's 32-bit Int are `BigInt`, objects and lists are `JSON`."""
    base = field.annotation
    if get_origin(base) in (Union, UnionType):  # `X | None`
        base = next(a for a in get_args(base) if a is not type(None))
    if get_origin(base) is Literal or base is str:
        return str
    if base is bool:
        return bool
    if base is int:
        bounds = [m.le for m in field.metadata if getattr(m, "le", None) is not None]
        return BigInt if bounds and bounds[0] > 2**31 - 1 else int
    if base is float:
        return float
    return JSON


def _with_options(cls: type, *, exclude: tuple[str, ...] = (), before: str | None = None) -> type:
    """`cls` with every option of `GenerationOptions` (less `exclude`) as an optional field,
    placed before the field `before` (or last)."""
    own = dict(cls.__annotations__)
    added = {
        name: _graphql_type(field) | None
        for name, field in GenerationOptions.model_fields.items()
        if name not in exclude
    }
    names = list(own)
    at = names.index(before) if before else len(names)
    cls.__annotations__ = {
        **{n: own[n] for n in names[:at]},
        **added,
        **{n: own[n] for n in names[at:]},
    }
    for name in added:
        setattr(cls, name, None)
    return cls


@strawberry.input
class GenerateImageInput:
    image: str | None = None
    image_url: str | None = None
    prompt: str | None = None


@strawberry.input
@functools.partial(_with_options, exclude=("prompt",))
class GenerateOptions:
    """The options of `generate` (its prompt is in `input`)."""


@strawberry.input
class GenerateInput:
    type: GenerationType
    provider: str
    input: GenerateImageInput
    options: GenerateOptions | None = None
    webhook_url: str | None = None


@strawberry.input
@functools.partial(_with_options, before="webhook_url")
class ImageAnimationInput:
    service: str
    image_url: str
    webhook_url: str | None = None


# GraphQL attribute → request field (the alias REST uses): every option but the prompt, which
# `_generate_body` takes from `input` and `ImageAnimationInput` has among its options.
_OPTION_FIELDS = {name: field.alias for name, field in GenerationOptions.model_fields.items()}


def _options(obj: Any) -> dict[str, Any]:
    out = {}
    for attr, key in _OPTION_FIELDS.items():
        value = getattr(obj, attr, None)
        if value is not None:
            out[key] = value
    return out


def _generate_body(data: GenerateInput) -> dict[str, Any]:
    body: dict[str, Any] = {"service": data.provider}
    if data.input.image is not None:
        body["image"] = data.input.image
    if data.input.image_url is not None:
        body["imageUrl"] = data.input.image_url
    if data.input.prompt is not None:
        body["prompt"] = data.input.prompt
    if data.options is not None:
        body.update(_options(data.options))
    if data.webhook_url is not None:
        body["webhookUrl"] = data.webhook_url
    return body


def _animate_body(data: ImageAnimationInput) -> dict[str, Any]:
    body: dict[str, Any] = {"service": data.service, "imageUrl": data.image_url}
    body.update(_options(data))
    if data.webhook_url is not None:
        body["webhookUrl"] = data.webhook_url
    return body


async def _submit(info: Info, body: dict[str, Any]) -> Generation:
    ctx, principal = info.context["ctx"], info.context["principal"]()
    recovered = info.context.get("recovered_generation")
    if recovered is not None:
        # This request's job was created by an earlier attempt whose process died before the
        # response was stored (generations/idempotency.py): answer with that job.
        return await ctx.db.run(_read, info, recovered)
    view = await service.submit(
        ctx=ctx,
        principal=principal,
        request=parse_request(body),
        idempotency_record=info.context.get("idempotency_record"),
    )
    info.context["notify_workers"]()
    return Generation.from_api(view)


def _read(info: Info, generation_id: str) -> Generation:
    ctx, principal = info.context["ctx"], info.context["principal"]()
    with ctx.db.session() as session:
        gen = service.get(session=session, principal=principal, generation_id=generation_id)
        return Generation.from_api(to_api(gen, session=session, storage=ctx.storage))


@strawberry.type
class Query:
    @strawberry.field(description="One generation of the calling account.")
    def generation(self, info: Info, id: strawberry.ID) -> Generation:
        return _read(info, str(id))

    @strawberry.field(description="The calling account's generations, newest first.")
    def generations(
        self, info: Info, first: int = 20, after: str | None = None, status: str | None = None
    ) -> GenerationConnection:
        ctx, principal = info.context["ctx"], info.context["principal"]()
        with ctx.db.session() as session:
            rows, cursor = service.list_generations(
                session=session, principal=principal, status=status, limit=first, cursor=after
            )
            nodes = [
                Generation.from_api(to_api(g, session=session, storage=ctx.storage)) for g in rows
            ]
        return GenerationConnection(nodes=nodes, end_cursor=cursor, has_next_page=bool(cursor))


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a generation (seed examples 1, 3 and 4).")
    async def generate(self, info: Info, input: GenerateInput) -> Generation:
        return await _submit(info, _generate_body(input))

    @strawberry.mutation(description="Create a generation from an image URL (seed example 2).")
    async def animate_image(self, info: Info, input: ImageAnimationInput) -> Generation:
        return await _submit(info, _animate_body(input))

    @strawberry.mutation(description="Cancel an unfinished generation; its credits are refunded.")
    async def cancel_generation(self, info: Info, id: strawberry.ID) -> Generation:
        ctx, principal = info.context["ctx"], info.context["principal"]()

        def run() -> Generation:  # a write transaction may wait for the lock: off the loop
            with ctx.db.session(write=True) as session:
                gen = service.cancel(
                    session=session,
                    storage=ctx.storage,
                    principal=principal,
                    generation_id=str(id),
                )
                return Generation.from_api(to_api(gen, session=session, storage=ctx.storage))

        return await run_in_threadpool(run)
