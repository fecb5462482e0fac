"""Bad input gets the documented 4xx with a clear message, never a 500 (API.md §6)."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.support.servers import free_port, photo_bytes


@pytest.fixture(scope="module")
def key(backend_server):
    return backend_server.create_key("errors", plan="pro", credits=1000)


def _post(srv, key, body, **headers):
    return httpx.post(
        srv.url + "/v1/image_to_video",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) - {"data"} == {"errors"} and body.get("data") is None, body
    err = body["errors"][0]
    assert err["extensions"]["code"] == code, body
    assert err["message"] and "Traceback" not in err["message"]
    return err


def _body(image_server, **kw):
    return {
        "service": "runway-i2v",
        "prompt": "",
        "imageUrl": image_server.url("/astronaut-small.jpg"),
        **kw,
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"service": None}, "service"),
        ({"prompt": None}, "prompt"),
        ({"imageUrl": None}, "image"),
        ({"duration": 11}, "duration"),
        ({"duration": 1}, "duration"),
        ({"duration": "five"}, "duration"),
        ({"aspectRatio": "4:3"}, "aspectRatio"),
        ({"version": "gen-5"}, "version"),
        ({"motionIntensity": "extreme"}, "motionIntensity"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"camera": {"zoom": 11}}, "camera.zoom"),
        ({"camera": {"dolly": 1}}, "camera.dolly"),
        ({"prompt": "x" * 1001}, "prompt"),
    ],
)
def test_invalid_fields_name_the_field(backend_server, image_server, key, change, field):
    body = _body(image_server)
    for k, v in change.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = v
    err = _error(_post(backend_server, key, body), 400, "VALIDATION_ERROR")
    assert err["extensions"]["field"] == field, err


def test_unknown_service_names_the_known_ones(backend_server, image_server, key):
    err = _error(
        _post(backend_server, key, _body(image_server, service="sora")), 400, "VALIDATION_ERROR"
    )
    assert "runway-i2v" in err["message"]


def test_not_json(backend_server, key):
    response = httpx.post(
        backend_server.url + "/v1/image_to_video",
        content=b"{nope",
        headers={"Authorization": f"Bearer {key}"},
    )
    _error(response, 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/corrupt.jpg", "INVALID_IMAGE"),
        ("/fake.png", "INVALID_IMAGE"),
        ("/status/404", "IMAGE_FETCH_FAILED"),
        ("/status/500", "IMAGE_FETCH_FAILED"),
    ],
)
def test_bad_images(backend_server, image_server, key, path, code):
    _error(
        _post(backend_server, key, _body(image_server, imageUrl=image_server.url(path))), 400, code
    )


def test_unreachable_url(backend_server, image_server, key):
    closed = image_server.url("/").rsplit(":", 1)[0] + f":{free_port()}/x.jpg"
    _error(
        _post(backend_server, key, _body(image_server, imageUrl=closed)), 400, "IMAGE_FETCH_FAILED"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/astronaut.jpg",
        "http://localhost:{port}/astronaut.jpg",
        "http://[::1]:{port}/x.jpg",
        "file:///etc/passwd",
    ],
)
def test_loopback_and_local_urls_are_refused(backend_server, image_server, key, url):
    url = url.format(port=backend_server.port)
    _error(_post(backend_server, key, _body(image_server, imageUrl=url)), 400, "URL_NOT_ALLOWED")


def test_data_uri_and_text_posing_as_png(backend_server, image_server, key):
    fake = "data:image/png;base64," + base64.b64encode(b"hello, not a png").decode()
    _error(
        _post(backend_server, key, _body(image_server, imageUrl=None, image=fake)),
        400,
        "INVALID_IMAGE",
    )
    good = "data:image/jpeg;base64," + base64.b64encode(photo_bytes("astronaut", size=128)).decode()
    body = _body(image_server, image=good, version="gen-2", duration=2)
    body.pop("imageUrl")
    response = _post(backend_server, key, body)
    assert response.status_code == 202, response.text


def test_oversized_body_is_413(backend_server, key):
    response = httpx.post(
        backend_server.url + "/v1/image_to_video",
        content=b"{" + b" " * (9 * 1024 * 1024) + b"}",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=30,
    )
    _error(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sm_wrong"},
        {"X-API-Key": "nope"},
        {"Authorization": "Basic abc"},
    ],
)
def test_missing_or_wrong_key_is_401(backend_server, headers):
    for method, path in [
        ("GET", "/v1/image_to_video"),
        ("GET", "/v1/account"),
        ("POST", "/graphql"),
    ]:
        response = httpx.request(
            method, backend_server.url + path, headers=headers, json={"query": "{ account { id } }"}
        )
        _error(response, 401, "UNAUTHENTICATED")


def test_another_accounts_job_is_404(backend_server, image_server, key):
    other = backend_server.create_key("someone-else")
    body = _body(image_server, version="gen-2", duration=2)
    gen_id = _post(backend_server, key, body).json()["data"]["imagevideo"]["id"]
    headers = {"Authorization": f"Bearer {other}"}
    _error(
        httpx.get(f"{backend_server.url}/v1/image_to_video/{gen_id}", headers=headers),
        404,
        "NOT_FOUND",
    )
    _error(
        httpx.delete(f"{backend_server.url}/v1/image_to_video/{gen_id}", headers=headers),
        404,
        "NOT_FOUND",
    )
    query = {"query": "query($id: ID!) { generation(id: $id) { id } }", "variables": {"id": gen_id}}
    response = httpx.post(backend_server.url + "/graphql", json=query, headers=headers)
    _error(response, 404, "NOT_FOUND")
    listed = httpx.get(backend_server.url + "/v1/image_to_video", headers=headers).json()
    assert gen_id not in {g["id"] for g in listed["data"]["imagevideos"]}


def test_graphql_errors_use_the_same_shape(backend_server, image_server, key):
    query = "mutation($input: ImageAnimationInput!) { animateImage(input: $input) { id } }"
    variables = {"input": {"service": "runway-i2v", "imageUrl": image_server.url("/fake.png")}}
    response = httpx.post(
        backend_server.url + "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {key}"},
    )
    err = _error(response, 400, "INVALID_IMAGE")
    assert err["path"] == ["animateImage"]
    response = httpx.post(
        backend_server.url + "/graphql",
        json={"query": "{ nope }"},
        headers={"Authorization": f"Bearer {key}"},
    )
    _error(response, 400, "BAD_REQUEST")


def test_cancel_refunds_and_finished_is_409(backend_server, image_server, key):
    before = httpx.get(
        backend_server.url + "/v1/account", headers={"Authorization": f"Bearer {key}"}
    ).json()
    body = _body(image_server, version="gen-2", duration=10)
    gen = _post(backend_server, key, body).json()["data"]["imagevideo"]
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.delete(f"{backend_server.url}/v1/image_to_video/{gen['id']}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["imagevideo"]["status"] == "cancelled"
    _error(
        httpx.delete(f"{backend_server.url}/v1/image_to_video/{gen['id']}", headers=headers),
        409,
        "ALREADY_FINISHED",
    )
    after = httpx.get(backend_server.url + "/v1/account", headers=headers).json()
    assert after["data"]["account"]["creditBalance"] == before["data"]["account"]["creditBalance"]
