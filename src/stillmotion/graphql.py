"""The root GraphQL schema, merged from each domain's types, and its HTTP endpoint.

The endpoint is ours rather than Strawberry's router so that GraphQL errors follow API.md §6:
the same `{"errors": [{"message", "extensions": {"code", …}}]}` body as REST, and, when the
operation failed as a whole (`data` null), the same HTTP status as REST would give.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import strawberry
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from graphql import GraphQLError, IntValueNode
from strawberry.extensions import SchemaExtension
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from stillmotion import errors, graphql_prepare, jsonbody
from stillmotion.accounts import gql as accounts_gql
from stillmotion.accounts import limits
from stillmotion.deps import authenticate
from stillmotion.generations import admission, idempotency
from stillmotion.generations import gql as generations_gql
from stillmotion.services import gql as services_gql
from stillmotion.webhooks import gql as webhooks_gql

log = logging.getLogger("stillmotion.graphql")

QUERIES: list[type] = [generations_gql.Query, accounts_gql.Query]
MUTATIONS: list[type] = [generations_gql.Mutation]
QUERIES.append(webhooks_gql.Query)
QUERIES.append(services_gql.Query)
MUTATIONS.append(webhooks_gql.Mutation)


class Schema(strawberry.Schema):
    def process_errors(
        self, errors_: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors_:
            original = error.original_error
            if original is not None and not isinstance(
                original, errors.StillmotionError | GraphQLError
            ):
                log.error("GraphQL resolver failed", exc_info=original)


def _big_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.ValidationFailed(f"seed: {value!r} is not an integer", field="seed")
    return value


def _big_int_literal(node, variables=None) -> int:
    if isinstance(node, IntValueNode):
        return int(node.value)
    raise errors.ValidationFailed("seed must be an integer literal", field="seed")


SCALARS = {
    generations_gql.BigInt: strawberry.scalar(
        name="BigInt",
        description="An integer beyond GraphQL's 32 bits (seeds: 0 … 2^32−1)",
        serialize=int,
        parse_value=_big_int,
        parse_literal=_big_int_literal,
    )
}


PREPARED = "prepared_document"


class UsePrepared(SchemaExtension):
    """Runs the document `graphql_prepare` parsed and validated off the event loop, instead of
    parsing and validating it again on the loop."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context.context
        if isinstance(context, dict) and PREPARED in context:
            self.execution_context.graphql_document = context[PREPARED]
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context.context
        if isinstance(context, dict) and PREPARED in context:
            self.execution_context.pre_execution_errors = []
        yield


@functools.cache
def _prepare_limiter() -> anyio.CapacityLimiter:
    """At most this many documents are prepared at once, so that GraphQL cannot take every
    thread of the pool that the sync routes share."""
    return anyio.CapacityLimiter(2)


def build_schema() -> Schema:
    return Schema(
        query=merge_types("Query", tuple(QUERIES)),
        mutation=merge_types("Mutation", tuple(MUTATIONS)),
        config=StrawberryConfig(scalar_map=SCALARS),
        extensions=[UsePrepared],
    )


schema = build_schema()
router = APIRouter(tags=["graphql"])


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    # Never stored by a cache on the way: answers may hold the webhook secret or account data.
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**(headers or {}), "Cache-Control": "no-store"},
    )


def format_error(error: GraphQLError) -> tuple[dict[str, Any], int, dict[str, str]]:
    """One GraphQL error in the §6 shape, the HTTP status it stands for, and its headers."""
    original = error.original_error
    headers: dict[str, str] = {}
    if isinstance(original, errors.StillmotionError):
        body, status, headers = original.as_graphql_error(), original.status, original.headers
    elif original is None or isinstance(original, GraphQLError):
        # Parse and validation errors; variable coercion wraps its GraphQLError in another.
        body = {"message": error.message, "extensions": {"code": "BAD_REQUEST"}}
        status = 400
    else:
        body = {
            "message": errors.InternalError.__doc__,
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
        status = 500
    if error.path:
        body["path"] = error.path
    if error.locations:
        body["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    return body, status, headers


@router.get("/graphql", include_in_schema=False)
def graphiql() -> HTMLResponse:
    return HTMLResponse(get_graphql_ide_html())


@router.post("/graphql", summary="GraphQL endpoint (generate, animateImage, …)")
async def graphql(request: Request) -> Response:
    payload = jsonbody.loads(await request.body())
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        raise errors.BadRequest('expected a JSON object with a "query" string')
    variables = payload.get("variables") or {}
    if not isinstance(variables, dict):
        raise errors.BadRequest('"variables" must be a JSON object')
    if not isinstance(payload.get("operationName"), str | None):
        raise errors.BadRequest('"operationName" must be a string')
    principal = await authenticate(request)
    ctx = request.app.state.ctx
    limiter = request.app.state.limiter
    # Parsing, the operation's choice, the cost limits and validation run in a thread, bounded
    # (graphql_prepare): no document holds the event loop, whatever its shape.
    try:
        operation = await anyio.to_thread.run_sync(
            graphql_prepare.prepare,
            payload["query"],
            payload.get("operationName"),
            schema._schema,
            limiter=_prepare_limiter(),
        )
    except graphql_prepare.Invalid as exc:
        await limits.check_read(limiter=limiter, scope=request.scope, principal=principal)
        return _json({"data": None, "errors": [format_error(e)[0] for e in exc.problems]}, 400)
    if not operation.creates:
        await limits.check_read(limiter=limiter, scope=request.scope, principal=principal)

    context = {
        "ctx": ctx,
        "principal": lambda: principal,
        "request": request,
        "notify_workers": request.app.state.notify_workers,
        PREPARED: operation.document,
    }

    async def execute() -> Response:
        result = await schema.execute(
            payload["query"],
            variable_values=variables,
            context_value=context,
            operation_name=payload.get("operationName"),
        )
        body: dict[str, Any] = {"data": result.data}
        status, headers = 200, {}
        if result.errors:
            formatted = [format_error(e) for e in result.errors]
            body["errors"] = [f for f, _, _ in formatted]
            if result.data is None:
                # The operation failed as a whole: its first error sets the status, as REST's
                # would.
                _, status, headers = formatted[0]
        return _json(body, status, headers)

    if operation.kind != "mutation":
        return await execute()

    def canonical() -> str:
        return json.dumps(
            {
                "query": operation.normalized,
                "variables": variables,
                "operationName": payload.get("operationName"),
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    # Mutations run under their `Idempotency-Key`; a create counts against the per-minute
    # window as `admission` decides (the same rule as REST).
    try:
        outcome = await idempotency.begin_request(
            request=request,
            db=ctx.db,
            account_id=principal.account_id,
            transport="graphql",
            canonical=canonical,
        )
    except errors.StillmotionError:
        if operation.creates:
            await admission.admit(request, principal, None)
        raise
    if isinstance(outcome, idempotency.Replay):
        if operation.creates:
            await admission.admit(request, principal, outcome)
        return outcome.response()
    try:
        if operation.creates:
            await admission.admit(request, principal, outcome)
        if isinstance(outcome, idempotency.Recover):
            # The create resolver answers with this job instead of creating one.
            context["recovered_generation"] = outcome.generation_id
        else:
            context["idempotency_record"] = outcome.record_id
        response = await execute()
    except errors.StillmotionError as exc:
        response = _json(
            {"data": None, "errors": [exc.as_graphql_error()]}, exc.status, exc.headers
        )
    except BaseException:
        await ctx.db.run(idempotency.abandon, db=ctx.db, outcome=outcome)
        raise
    return await idempotency.settle(db=ctx.db, outcome=outcome, response=response)
