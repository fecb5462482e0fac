"""GraphQL documents that once skipped the Idempotency-Key or froze the server (findings 1, 2, 5).

Against a real `stillmotion serve` subprocess: a document whose operation the server cannot pick
is refused before anything runs, and documents built to be expensive are refused quickly while
the event loop keeps answering `/healthz`.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.api import account, jobs
from tests.support.servers import small_gql_input


def _gql(server, key, query, variables=None, headers=None, **extra):
    return httpx.post(
        server.url + "/graphql",
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
        json={"query": query, "variables": variables or {}, **extra},
        timeout=60,
    )


GENERATE = "mutation G($a: GenerateInput!) { generate(input: $a) { id } }"


def test_two_operations_without_a_name_are_refused_and_charge_nothing(idle_server, image_server):
    key = idle_server.create_key("two-ops", credits=1000)
    document = GENERATE + "\nquery Q { account { id } }"
    variables = {"a": small_gql_input(image_server)}
    for _ in range(3):
        response = _gql(
            idle_server, key, document, variables, headers={"Idempotency-Key": "same-key-1"}
        )
        assert response.status_code == 400, response.text
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_REQUEST"
        assert "operationName" in error["message"]
    with idle_server.client(key) as client:
        assert jobs(client) == []
        assert account(client)["creditBalance"] == 1000


def test_a_named_operation_of_several_runs_once_under_its_key(idle_server, image_server):
    key = idle_server.create_key("two-ops-named", credits=1000)
    document = GENERATE + "\nquery Q { account { id } }"
    variables = {"a": small_gql_input(image_server)}
    bodies = []
    for _ in range(3):
        response = _gql(
            idle_server,
            key,
            document,
            variables,
            headers={"Idempotency-Key": "same-key-2"},
            operationName="G",
        )
        assert response.status_code == 200, response.text
        bodies.append(response.json()["data"]["generate"]["id"])
    assert len(set(bodies)) == 1
    with idle_server.client(key) as client:
        assert len(jobs(client)) == 1
        assert account(client)["creditBalance"] < 1000
    # The other operation of the same document is a read, run without the key's record.
    response = _gql(idle_server, key, document, variables, operationName="Q")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["account"]["id"]


@pytest.mark.parametrize(
    ("document", "operation_name"),
    [
        (GENERATE + "\nmutation H($a: GenerateInput!) { animateImage(input: $a) { id } }", None),
        (GENERATE, "Nope"),
        ("{ account { id } }", "Anon"),
        ("query A { account { id } } query A { account { id } }", "A"),
    ],
    ids=["two-mutations", "unknown-name", "name-on-anonymous", "duplicate-names"],
)
def test_operations_the_server_cannot_pick_are_400(idle_server, document, operation_name):
    key = idle_server.create_key(f"pick-{len(document)}-{operation_name}", credits=1000)
    extra = {} if operation_name is None else {"operationName": operation_name}
    response = _gql(idle_server, key, document, {"a": {}}, **extra)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    with idle_server.client(key) as client:
        assert account(client)["creditBalance"] == 1000


def _introspections(n: int) -> str:
    return (
        "{"
        + " ".join(f"i{i}: __schema {{ types {{ name fields {{ name }} }} }}" for i in range(n))
        + "}"
    )


def _fragment_bomb(levels: int) -> str:
    fragments = [f"fragment F{i} on Account {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    fragments.append(f"fragment F{levels} on Account {{ id creditBalance }}")
    return "{ account { ...F0 } }\n" + "\n".join(fragments)


FREEZERS = {
    "200000-fields": "{account{" + " id" * 200_000 + "}}",
    "5000-aliases": "{" + " ".join(f"a{i}: account{{id creditBalance}}" for i in range(5000)) + "}",
    "100000-typenames": "{" + " __typename" * 100_000 + "}",
    "20000-directives": "{ account { id" + " @include(if: true)" * 20_000 + " } }",
    "200-introspections": _introspections(200),
    "fragment-bomb": _fragment_bomb(30),
    "deep": '{ __type(name: "Query") {' + " ofType {" * 60 + " name" + " }" * 61,
}


def _healthz_latencies(url: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            client.get(url + "/healthz")
            out.append(time.perf_counter() - start)
            time.sleep(0.01)


@pytest.mark.parametrize("name", sorted(FREEZERS))
def test_expensive_documents_are_400_and_the_server_keeps_answering(server, name):
    key = server.create_key("freezers")
    latencies: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=_healthz_latencies, args=(server.url, stop, latencies))
    probe.start()
    try:
        time.sleep(0.1)
        started = time.perf_counter()
        # Three at once, as an attacker would send them.
        results: list[httpx.Response] = []
        senders = [
            threading.Thread(target=lambda: results.append(_gql(server, key, FREEZERS[name])))
            for _ in range(3)
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        elapsed = time.perf_counter() - started
        time.sleep(0.1)
    finally:
        stop.set()
        probe.join()
    for response in results:
        assert response.status_code == 400, response.text[:500]
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
        assert len(response.content) < 4096
    assert elapsed < 3, elapsed
    assert latencies and max(latencies) < 0.2, sorted(latencies)[-5:]


def test_graphiql_introspection_and_the_seed_queries_stay_within_the_limits(server):
    from graphql import get_introspection_query

    key = server.create_key("introspect")
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    response = _gql(server, key, query, operationName="IntrospectionQuery")
    assert response.status_code == 200, response.text[:500]
    assert response.json()["data"]["__schema"]["queryType"]["name"] == "Query"


def test_a_query_longer_than_the_cap_is_refused_before_it_is_parsed(server):
    key = server.create_key("long-query")
    response = _gql(server, key, "{ account { id } }" + "#" * 200_000)
    assert response.status_code == 400, response.text[:500]
    assert "query" in response.json()["errors"][0]["message"]


def test_distinct_large_queries_do_not_grow_the_document_cache():
    """The cache of prepared documents is keyed by a digest and holds only small documents:
    40 distinct 60 KB queries leave under 2 MB behind (cached, they kept 7.6 MB; keyed by their
    text, as before, they kept the texts too), and small ones fill at most CACHE_ENTRIES."""
    import gc
    import tracemalloc

    from stillmotion import graphql_prepare
    from stillmotion.graphql import schema

    graphql_prepare.clear_cache()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(40):
        # Near the size cap, valid, each distinct.
        big = '{ __type(name: "' + f"T{i}" + "x" * 60_000 + '") { name } }'
        graphql_prepare.prepare(big, None, schema._schema)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 2_000_000, grown
    assert graphql_prepare.cache_info().currsize == 0
    for i in range(graphql_prepare.CACHE_ENTRIES * 2):
        graphql_prepare.prepare(f"query Q{i} {{ account {{ id }} }}", None, schema._schema)
    assert graphql_prepare.cache_info().currsize == graphql_prepare.CACHE_ENTRIES
