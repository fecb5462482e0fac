"""Hostile or careless input over real HTTP: each is a 4xx in the §6 body, never a 500, and
what an error quotes back is bounded. Also the HTTP edges: 405 with `Allow`, a malformed
`Range` on /media ignored, and CORS only when configured."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.servers import StillmotionServer, small_request

DEEP = 1_000  # nesting depth the issue found answering 500
HUGE_INT = "9" * 5_000  # over Python's 4,300-digit str -> int limit
LONE = "\\udfff"  # a JSON escape that decodes to a lone surrogate


@pytest.fixture(scope="module")
def key(server):
    return server.create_key("hostile", plan="pro", credits=100_000)


def _error(response: httpx.Response, status: int, *codes: str) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) - {"data"} == {"errors"} and body.get("data") is None, body
    err = body["errors"][0]
    assert err["extensions"]["code"] in codes, body
    assert err["message"] and "Traceback" not in response.text
    return err


def _post_raw(srv, key, path: str, raw: str, method: str = "POST", **headers) -> httpx.Response:
    return httpx.request(
        method,
        srv.url + path,
        content=raw.encode(),
        timeout=30,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers},
    )


def _create_with(image_server, extra_raw: str) -> str:
    """A valid create body (as JSON text) with one more member whose value is `extra_raw`."""
    body = json.dumps(small_request(image_server))
    return body[:-1] + ', "extra": ' + extra_raw + "}"


def _gql(srv, key, query: str, variables_raw: str = "{}") -> httpx.Response:
    raw = '{"query": ' + json.dumps(query) + ', "variables": ' + variables_raw + "}"
    return _post_raw(srv, key, "/graphql", raw)


def _no_tracebacks(srv: StillmotionServer) -> None:
    log = srv.log_path.read_text(errors="replace")
    for marker in ("RecursionError", "Exceeds the limit", "UnicodeEncodeError", "OverflowError"):
        assert marker not in log, marker


# --- 500s that are client mistakes -----------------------------------------------------------


@pytest.mark.parametrize("idempotency", [False, True], ids=["plain", "with-key"])
def test_deeply_nested_rest_create_is_400(server, image_server, key, idempotency):
    headers = {"Idempotency-Key": f"deep-{idempotency}"} if idempotency else {}
    raw = _create_with(image_server, "[" * DEEP + "]" * DEEP)
    err = _error(_post_raw(server, key, "/v1/image_to_video", raw, **headers), 400, "BAD_REQUEST")
    assert "deep" in err["message"]
    _no_tracebacks(server)


@pytest.mark.parametrize("idempotency", [False, True], ids=["plain", "with-key"])
def test_huge_integer_in_rest_create_is_400(server, image_server, key, idempotency):
    headers = {"Idempotency-Key": f"int-{idempotency}"} if idempotency else {}
    raw = _create_with(image_server, HUGE_INT)
    err = _error(_post_raw(server, key, "/v1/image_to_video", raw, **headers), 400, "BAD_REQUEST")
    assert "digits" in err["message"]
    _no_tracebacks(server)


def test_deep_and_huge_in_graphql_variables_are_400(server, key):
    query = "query Q($x: JSON) { account { id } }"
    for variables in ('{"x": ' + "[" * DEEP + "]" * DEEP + "}", '{"x": ' + HUGE_INT + "}"):
        _error(_gql(server, key, query, variables), 400, "BAD_REQUEST")
    _no_tracebacks(server)


@pytest.mark.parametrize("value", ["[" * DEEP + "]" * DEEP, HUGE_INT], ids=["deep", "huge-int"])
def test_other_rest_json_bodies_are_400(server, key, value):
    raw = '{"url": null, "extra": ' + value + "}"
    _error(
        _post_raw(server, key, "/v1/account/webhook", raw, method="PUT"),
        400,
        "BAD_REQUEST",
        "VALIDATION_ERROR",
    )
    _no_tracebacks(server)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("query Q($id: ID!) { generation(id: $id) { id } }", "id"),
        ("mutation M($id: ID!) { cancelGeneration(id: $id) { id } }", "id"),
        ("mutation M($id: ID!) { redeliverWebhook(id: $id) { id } }", "id"),
        ("query Q($id: ID!) { deliveries(generationId: $id) { id } }", "generationId"),
    ],
    ids=["generation", "cancelGeneration", "redeliverWebhook", "deliveries"],
)
def test_lone_surrogate_id_is_400(backend_server, query, field):
    key = backend_server.create_key("surrogate", credits=0)
    err = _error(
        _gql(backend_server, key, query, '{"id": "' + LONE + '"}'), 400, "VALIDATION_ERROR"
    )
    assert err["extensions"]["field"] == field, err
    _no_tracebacks(backend_server)


def test_lone_surrogate_in_a_query_literal_is_400(server, key):
    response = _gql(server, key, '{ generation(id: "' + LONE + '") { id } }')
    _error(response, 400, "BAD_REQUEST", "VALIDATION_ERROR")
    _no_tracebacks(server)


def test_lone_surrogate_in_a_rest_prompt_is_400(server, image_server, key):
    body = json.dumps(small_request(image_server, prompt="PLACEHOLDER"))
    raw = body.replace("PLACEHOLDER", "a " + LONE + " b")
    err = _error(_post_raw(server, key, "/v1/image_to_video", raw), 400, "VALIDATION_ERROR")
    assert err["extensions"]["field"] == "prompt", err
    _no_tracebacks(server)


@pytest.mark.parametrize("before", [str(2**64), str(2**63), "-" + str(2**64)])
def test_ledger_before_beyond_64_bits_is_400(server, key, before):
    response = httpx.get(
        server.url + "/v1/account/ledger",
        params={"before": before},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    err = _error(response, 400, "VALIDATION_ERROR")
    assert err["extensions"]["field"] == "before", err
    _no_tracebacks(server)


def test_ledger_before_in_range_still_pages(server, key):
    with server.client(key) as client:
        response = client.get("/v1/account/ledger", params={"before": 2**63 - 1})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["ledger"], "the grant is older than any id"


# --- bounded echoes --------------------------------------------------------------------------


def test_an_8kb_id_gets_a_short_404(server, key):
    long_id = "g" * 8192
    with server.client(key) as client:
        for method, path in [
            ("GET", f"/v1/image_to_video/{long_id}/deliveries"),
            ("DELETE", f"/v1/image_to_video/{long_id}"),
        ]:
            response = client.request(method, path)
            err = _error(response, 404, "NOT_FOUND")
            assert len(response.content) < 300, len(response.content)
            assert "8192 characters" in err["message"], err
        # Every message is capped, whichever code raised it (the polling read's own 404).
        response = client.get(f"/v1/image_to_video/{long_id}")
        _error(response, 404, "NOT_FOUND")
        assert len(response.content) < 1200, len(response.content)


def test_a_long_graphql_id_gets_a_short_error(server, key):
    variables = json.dumps({"id": "x" * 200_000})
    for query in (
        "query Q($id: ID!) { generation(id: $id) { id } }",
        "mutation M($id: ID!) { redeliverWebhook(id: $id) { id } }",
    ):
        response = _gql(server, key, query, variables)
        _error(response, 404, "NOT_FOUND")
        assert len(response.content) < 1000, len(response.content)


def test_quoted_input_is_escaped(server, key):
    with server.client(key) as client:
        response = client.get("/v1/image_to_video/a%0Ab%1B%5B31mc")
    err = _error(response, 404, "NOT_FOUND")
    assert "\n" not in err["message"] and "\x1b" not in err["message"], err


# --- HTTP edges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/healthz", {"GET"}),
        ("DELETE", "/v1/account", {"GET"}),
        ("PATCH", "/v1/image_to_video", {"GET", "POST"}),
        ("PUT", "/v1/image_to_video/some-id", {"GET", "DELETE"}),
    ],
)
def test_405_names_the_allowed_methods(server, key, method, path, allowed):
    response = httpx.request(
        method, server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    _error(response, 405, "METHOD_NOT_ALLOWED")
    assert {m.strip() for m in response.headers["allow"].split(",")} >= allowed, response.headers


@pytest.fixture(scope="module")
def media_file(server):
    path = server.data_dir / "media" / "outputs" / "hostile-range.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(range(256)) * 40)
    return path


@pytest.mark.parametrize("range_", ["bytes=abc", "bytes=5-2", "pages=0-10", "bytes=", "bytes=-"])
def test_malformed_range_on_media_gets_the_whole_file(server, media_file, range_):
    response = httpx.get(
        server.url + "/media/outputs/" + media_file.name, headers={"Range": range_}, timeout=30
    )
    assert response.status_code == 200, (response.status_code, response.text[:200])
    assert response.content == media_file.read_bytes()


def test_valid_range_on_media_is_still_partial(server, media_file):
    response = httpx.get(
        server.url + "/media/outputs/" + media_file.name, headers={"Range": "bytes=10-19"}
    )
    assert response.status_code == 206, response.status_code
    assert response.content == media_file.read_bytes()[10:20]


# --- CORS ------------------------------------------------------------------------------------

ORIGIN = "https://app.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, idempotency-key, content-type, x-api-key",
}


def _tokens(header: str) -> set[str]:
    return {h.strip().lower() for h in header.split(",")}


def test_no_cors_by_default(server, key):
    preflight = httpx.options(server.url + "/v1/image_to_video", headers=PREFLIGHT, timeout=30)
    assert "access-control-allow-origin" not in preflight.headers
    response = httpx.get(
        server.url + "/v1/account",
        headers={"Authorization": f"Bearer {key}", "Origin": ORIGIN},
        timeout=30,
    )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_cors_when_configured(make_server, image_server):
    srv = make_server(
        "sqlite", workers=0, env={"STILLMOTION_CORS_ORIGINS": f"{ORIGIN}, https://other.example"}
    ).start()
    key = srv.create_key("cors", credits=1000)
    preflight = httpx.options(srv.url + "/v1/image_to_video", headers=PREFLIGHT, timeout=30)
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    allowed = _tokens(preflight.headers["access-control-allow-headers"])
    assert {"authorization", "idempotency-key", "content-type", "x-api-key"} <= allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]

    # Another origin is not let in.
    stranger = httpx.options(
        srv.url + "/v1/image_to_video", headers={**PREFLIGHT, "Origin": "https://evil.example"}
    )
    assert stranger.headers.get("access-control-allow-origin") != "https://evil.example"

    # The real request (what the seed's browser example sends) exposes what clients read.
    response = httpx.post(
        srv.url + "/v1/image_to_video",
        json=small_request(image_server),
        headers={"Authorization": f"Bearer {key}", "Origin": ORIGIN, "Idempotency-Key": "c1"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = _tokens(response.headers["access-control-expose-headers"])
    assert {"location", "retry-after", "idempotent-replayed", "x-ratelimit-limit"} <= exposed
    assert {"x-ratelimit-remaining", "x-ratelimit-reset"} <= exposed

    # Errors carry the CORS headers too, so a browser client can read them.
    denied = httpx.get(srv.url + "/v1/account", headers={"Origin": ORIGIN})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == ORIGIN
