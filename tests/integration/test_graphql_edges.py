"""Odd but possible GraphQL and list inputs get a 400, never a 500."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.support.servers import small_gql_input


@pytest.fixture(scope="module")
def key(server):
    return server.create_key("edges")


def _gql(server, key, query, variables=None, **extra):
    return httpx.post(
        server.url + "/graphql",
        headers={"Authorization": f"Bearer {key}"},
        json={"query": query, "variables": variables or {}, **extra},
        timeout=30,
    )


MUTATION = (
    'mutation { generate(input: {type: VIDEO, provider: "runway-i2v", '
    'input: {imageUrl: "%s"}, options: {seed: %s, duration: 2, version: "gen-2"}}) '
    "{ id metadata } }"
)


@pytest.mark.parametrize("seed", ['"abc"', "true", "1.5", "-1", "4294967296"])
def test_bad_seed_literals_are_400(server, key, image_server, seed):
    response = _gql(server, key, MUTATION % (image_server.url("/astronaut-small.jpg"), seed))
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] in ("VALIDATION_ERROR", "BAD_REQUEST")


def test_a_big_seed_literal_is_kept(server, key, image_server):
    response = _gql(
        server, key, MUTATION % (image_server.url("/astronaut-small.jpg"), "4294967295")
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["generate"]["metadata"]["seed"] == 4294967295


@pytest.mark.parametrize("operation_name", [5, ["a"], {"x": 1}])
def test_operation_name_must_be_a_string(server, key, operation_name):
    response = _gql(server, key, "{ account { id } }", operationName=operation_name)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("created", ["2024-01-01T00:00:00", "yesterday", 5])
def test_forged_cursors_are_400(server, key, created):
    cursor = base64.urlsafe_b64encode(json.dumps([created, "gen_x"]).encode()).decode()
    response = httpx.get(
        server.url + "/v1/image_to_video",
        params={"cursor": cursor},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["field"] == "cursor"
    response = _gql(
        server, key, "query($c: String) { generations(after: $c) { endCursor } }", {"c": cursor}
    )
    assert response.status_code == 400, response.text


def test_two_creates_in_one_mutation_are_refused_before_anything_runs(server, image_server):
    key = server.create_key("two-creates", credits=1000)
    variables = {"a": small_gql_input(image_server)}
    query = (
        "mutation($a: GenerateInput!) { x: generate(input: $a) { id } "
        "...more }\nfragment more on Mutation { y: generate(input: $a) { id } }"
    )
    for _ in range(2):
        response = _gql(server, key, query, variables)
        assert response.status_code == 400, response.text
    account = httpx.get(server.url + "/v1/account", headers={"X-API-Key": key}).json()
    assert account["data"]["account"]["creditBalance"] == 1000
    single = "mutation($a: GenerateInput!) { ... on Mutation { generate(input: $a) { id } } }"
    assert _gql(server, key, single, variables).status_code == 200


def test_cancel_generation_over_graphql(server, image_server):
    key = server.create_key("gql-cancel", credits=100)
    created = httpx.post(
        server.url + "/v1/image_to_video",
        json={
            "service": "runway-i2v",
            "prompt": "",
            "duration": 10,
            "version": "gen-3",
            "imageUrl": image_server.url("/astronaut-small.jpg"),
        },
        headers={"X-API-Key": key},
    ).json()["data"]["imagevideo"]
    cancel = "mutation($id: ID!) { cancelGeneration(id: $id) { id status } }"
    response = _gql(server, key, cancel, {"id": created["id"]})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["cancelGeneration"]["status"] == "cancelled"
    again = _gql(server, key, cancel, {"id": created["id"]})
    assert again.status_code == 409
    assert again.json()["errors"][0]["extensions"]["code"] == "ALREADY_FINISHED"
    account = httpx.get(server.url + "/v1/account", headers={"X-API-Key": key}).json()
    assert account["data"]["account"]["creditBalance"] == 100  # refunded
