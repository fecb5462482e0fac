"""A GraphQL document made ready to run: parsed, its operation picked, its cost bounded, validated.

All of it happens before anything runs, in a worker thread (`graphql.py` calls `prepare` through
`anyio.to_thread`), so that no document, however it is built, holds the event loop:

- the text is at most `MAX_QUERY_BYTES` and the parser stops at `MAX_TOKENS` tokens, so a
  document of 200,000 fields or 20,000 directives costs a few milliseconds to refuse;
- the operation to run must be unambiguous (the GraphQL spec's GetOperation): several operations
  need an `operationName`, and a name must name one of them. Limits and the `Idempotency-Key`
  are decided from that one operation, and the executor runs exactly it;
- a cost walk over the operation, with each fragment's cost computed once (so a chain of
  fragments that doubles at each level is counted, not expanded), bounds the fields selected,
  the aliases, the depth, the directives and the introspection fields; only then does the
  schema's validation run (some of its rules are quadratic in the fields of one selection);
- prepared documents are cached by a digest of their text, and only small ones, so distinct
  large queries cannot fill memory with cached texts or trees.

The limits are far above what the seed's queries (a few dozen tokens) and GraphiQL's
introspection query (about 200 tokens, depth 13) need.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import NamedTuple

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    print_ast,
    specified_rules,
)
from strawberry.schema.schema import validate_document

from stillmotion import errors

MAX_QUERY_BYTES = 64 * 1024
MAX_TOKENS = 3000
MAX_FIELDS = 500  # fields selected by the operation, fragments counted where they are spread
MAX_ALIASES = 30
MAX_DEPTH = 15
MAX_DIRECTIVES = 50
MAX_INTROSPECTION = 2  # `__schema` and `__type` fields (GraphiQL asks for `__schema` once)
CACHE_ENTRIES = 64
CACHE_MAX_QUERY_BYTES = 2 * 1024

CREATE_FIELDS = frozenset({"generate", "animateImage"})


@dataclass(frozen=True)
class Prepared:
    """A document ready for the executor, and what the request will do."""

    document: DocumentNode
    kind: str  # "query", "mutation" or "subscription": the operation that will run
    creates: bool  # a mutation with a `generate` or `animateImage` field
    normalized: str  # the document printed canonically (the idempotency fingerprint uses it)


class _Cost(NamedTuple):
    fields: int
    aliases: int
    depth: int
    directives: int
    introspection: int


_ZERO = _Cost(0, 0, 0, 0, 0)


class _Refused(Exception):
    pass


class Invalid(Exception):
    """The document does not parse or does not validate: GraphQL errors, with locations, that
    the endpoint answers as a 400 (the same body the executor would give)."""

    def __init__(self, problems: list[GraphQLError]) -> None:
        super().__init__(problems[0].message)
        self.problems = problems


def prepare(
    query: str, operation_name: str | None, schema: GraphQLSchema | None = None
) -> Prepared:
    """The document of this request ready to run; `Invalid` when it does not parse or
    validate, `errors.BadRequest` when it breaks a rule of ours (size, cost, which operation).

    CPU-bound and bounded: call it off the event loop. With `schema`, the document is also
    validated against it; the cache is keyed by the digest of the text and the operation name.
    """
    if len(query.encode("utf-8", "surrogatepass")) > MAX_QUERY_BYTES:
        raise errors.BadRequest(f"the GraphQL query is over {MAX_QUERY_BYTES} bytes")
    cacheable = len(query) <= CACHE_MAX_QUERY_BYTES
    if cacheable:
        digest = hashlib.sha256(query.encode("utf-8", "surrogatepass")).digest()
        key = (digest, operation_name, schema is not None and id(schema))
        hit = _cache.get(key)
        if hit is not None:
            return hit
    prepared = _prepare(query, operation_name, schema)
    if cacheable:
        _cache.put(key, prepared)
    return prepared


def _prepare(query: str, operation_name: str | None, schema: GraphQLSchema | None) -> Prepared:
    try:
        document = parse(query, max_tokens=MAX_TOKENS, no_location=False)
    except GraphQLError as exc:
        raise Invalid([exc]) from None
    operation = _pick(document, operation_name)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    try:
        cost = _selection_cost(operation.selection_set, fragments, {}, frozenset())
    except _Refused as exc:
        raise errors.BadRequest(str(exc)) from None
    cost = cost._replace(directives=cost.directives + len(operation.directives or ()))
    for name, value, limit in (
        ("fields", cost.fields, MAX_FIELDS),
        ("aliases", cost.aliases, MAX_ALIASES),
        ("levels of nesting", cost.depth, MAX_DEPTH),
        ("directives", cost.directives, MAX_DIRECTIVES),
        ("introspection fields", cost.introspection, MAX_INTROSPECTION),
    ):
        if value > limit:
            raise errors.BadRequest(
                f"the operation has {value} {name}; at most {limit} are allowed"
            )
    if schema is not None:
        problems = validate_document(schema, document, tuple(specified_rules))
        if problems:
            raise Invalid(problems[:10])
    kind = operation.operation.value
    roots = _root_fields(operation.selection_set, fragments, set())
    creates = kind == "mutation" and any(f in CREATE_FIELDS for f in roots)
    if creates and len(roots) > 1:
        # Several fields would run one after another: a create could commit (and charge) and
        # a later field fail, nulling `data`, and the client could neither see nor safely
        # retry what was created. One create per request keeps retries exact.
        raise errors.BadRequest(
            "a generate or animateImage mutation must be the only field of its operation"
        )
    return Prepared(document, kind, creates, print_ast(document))


def _pick(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode:
    """The one operation to run (GraphQL spec, GetOperation), or BadRequest."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if not operations:
        raise errors.BadRequest("the document has no operation to run")
    if operation_name is None:
        if len(operations) > 1:
            raise errors.BadRequest(
                "the document has several operations: name the one to run in operationName"
            )
        return operations[0]
    named = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if len(named) != 1:
        # The name is the client's text: it is not echoed (it may be long, or forged for logs).
        raise errors.BadRequest(
            "operationName names no operation of the document"
            if not named
            else "operationName names several operations of the document"
        )
    return named[0]


def _selection_cost(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    memo: dict[str, _Cost],
    active: frozenset[str],
) -> _Cost:
    """What a selection set selects, fragments included where they are spread. Each fragment's
    cost is computed once (`memo`), so the walk is linear in the document's size."""
    if selection_set is None:
        return _ZERO
    fields = aliases = directives = introspection = depth = 0
    for selection in selection_set.selections:
        directives += len(selection.directives or ())
        if isinstance(selection, FieldNode):
            inner = _selection_cost(selection.selection_set, fragments, memo, active)
            fields += 1 + inner.fields
            aliases += (selection.alias is not None) + inner.aliases
            directives += inner.directives
            introspection += (selection.name.value in ("__schema", "__type")) + inner.introspection
            depth = max(depth, 1 + inner.depth)
        else:
            if isinstance(selection, InlineFragmentNode):
                inner = _selection_cost(selection.selection_set, fragments, memo, active)
            else:
                inner = _spread_cost(selection, fragments, memo, active)
            fields += inner.fields
            aliases += inner.aliases
            directives += inner.directives
            introspection += inner.introspection
            depth = max(depth, inner.depth)
        if fields > MAX_FIELDS * 4 or directives > MAX_DIRECTIVES * 4:
            # Counting further is pointless: refuse while the numbers are still small to add.
            break
    return _Cost(fields, aliases, depth, directives, introspection)


def _spread_cost(
    spread: FragmentSpreadNode,
    fragments: dict[str, FragmentDefinitionNode],
    memo: dict[str, _Cost],
    active: frozenset[str],
) -> _Cost:
    name = spread.name.value
    if name in memo:
        return memo[name]
    if name in active:
        raise _Refused(f"fragment {_short(name, 40)} spreads itself")
    fragment = fragments.get(name)
    if fragment is None:
        return _ZERO  # validation reports the unknown fragment
    cost = _selection_cost(fragment.selection_set, fragments, memo, active | {name})
    memo[name] = cost
    return cost


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


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _LRU:
    """A small thread-safe LRU (prepare runs in worker threads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict = OrderedDict()
        self.lock = Lock()

    def get(self, key):
        with self.lock:
            value = self.entries.get(key)
            if value is not None:
                self.entries.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


class CacheInfo(NamedTuple):
    currsize: int
    maxsize: int


_cache = _LRU(CACHE_ENTRIES)


def clear_cache() -> None:
    _cache.clear()


def cache_info() -> CacheInfo:
    return CacheInfo(len(_cache.entries), _cache.size)
