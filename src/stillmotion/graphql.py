"""The root GraphQL schema, merged from each domain's types, and its HTTP endpoint.

The endpoint is ours rather than Strawberry's router so that GraphQL errors follow API.md §6:
the same `{"errors": [{"message", "extensions": {"code", …}}]}` body as REST, and, when the
operation failed as a whole (`data` null), the same HTTP status as REST would give.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import strawberry
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    print_ast,
)
from graphql import parse as parse_graphql
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from stillmotion import errors
from stillmotion.accounts import gql as accounts_gql
from stillmotion.accounts import limits
from stillmotion.deps import authenticate
from stillmotion.generations import gql as generations_gql
from stillmotion.generations import idempotency
from stillmotion.webhooks import gql as webhooks_gql

log = logging.getLogger("stillmotion.graphql")

QUERIES: list[type] = [generations_gql.Query, accounts_gql.Query]
MUTATIONS: list[type] = [generations_gql.Mutation]
QUERIES.append(webhooks_gql.Query)
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


def build_schema() -> Schema:
    return Schema(
        query=merge_types("Query", tuple(QUERIES)),
        mutation=merge_types("Mutation", tuple(MUTATIONS)),
        config=StrawberryConfig(scalar_map=SCALARS),
    )


schema = build_schema()
router = APIRouter(tags=["graphql"])


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status_code=status, media_type="application/json", headers=headers
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
    try:
        payload = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise errors.BadRequest("the request body is not valid JSON") from None
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
    operation = classify(payload["query"], payload.get("operationName"))
    plan = None
    if operation.creates:
        # Creates count in their resolvers, after the idempotency check; until then the
        # response reports the create window as it stands.
        plan = await limits.plan_limits(
            state=request.app.state, db=ctx.db, account_id=principal.account_id
        )
        await limits.peek_create(
            limiter=limiter, scope=request.scope, principal=principal, limits=plan
        )
    else:
        await limits.check_read(limiter=limiter, scope=request.scope, principal=principal)

    async def count_create() -> None:
        # `plan` is None when `classify` did not see the create (e.g. behind a fragment).
        await limits.check_create(
            limiter=limiter,
            scope=request.scope,
            principal=principal,
            limits=plan
            or await limits.plan_limits(
                state=request.app.state, db=ctx.db, account_id=principal.account_id
            ),
        )

    context = {
        "ctx": ctx,
        "principal": lambda: principal,
        "request": request,
        "notify_workers": request.app.state.notify_workers,
        "count_create": count_create,
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

    async def recover(gen_id: str) -> Response:
        # The create resolver answers with this job instead of creating one (generations/gql).
        context["recovered_generation"] = gen_id
        return await execute()

    return await idempotency.run(
        request=request,
        db=ctx.db,
        account_id=principal.account_id,
        transport="graphql",
        canonical=canonical,
        handler=execute,
        recover=recover,
    )


@dataclass(frozen=True)
class Operation:
    kind: str  # "query", "mutation", "subscription", or "" when the document does not parse
    creates: bool  # a mutation with a `generate` or `animateImage` field
    normalized: str  # the document printed canonically (the raw text when it does not parse)


CREATE_FIELDS = frozenset({"generate", "animateImage"})


@lru_cache(maxsize=512)
def classify(query: str, operation_name: str | None) -> Operation:
    """What the request will do, decided before it runs (limits and idempotency need it)."""
    try:
        document = parse_graphql(query)
    except GraphQLError:
        return Operation("", False, query)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [
        o
        for o in operations
        if operation_name is None or (o.name and o.name.value == operation_name)
    ]
    if len(chosen) != 1:
        return Operation("", False, print_ast(document))
    op = chosen[0]
    kind = op.operation.value
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    fields = _root_fields(op.selection_set, fragments, set())
    creates = kind == "mutation" and any(f in CREATE_FIELDS for f in fields)
    if creates and len(fields) > 1:
        # Several fields would run one after another: a create could commit (and charge) and
        # a later field fail, nulling `data`, and the client could neither see nor safely
        # retry what was created. One create per request keeps retries exact.
        raise errors.BadRequest(
            "a generate or animateImage mutation must be the only field of its operation"
        )
    return Operation(kind, creates, print_ast(document))


def _root_fields(selection_set, fragments, seen: set[str]) -> list[str]:
    """The operation's top-level field names, through inline fragments and spreads."""
    names: list[str] = []
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            names.append(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            names += _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                seen.add(name)
                names += _root_fields(fragments[name].selection_set, fragments, seen)
    return names
