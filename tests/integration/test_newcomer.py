"""What a new user trips on, answered by the API itself: a refused URL names the field and the
setting that opens it, a misspelled REST field is reported (and refused in strict mode), a 402
says how many credits were needed, over real HTTP against a `stillmotion serve` subprocess."""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.support.servers import StillmotionServer, photo_bytes, small_gql_input, small_request

GENERATE = "mutation($input: GenerateInput!) { generate(input: $input) { id creditCost } }"
ANIMATE = "mutation($input: ImageAnimationInput!) { animateImage(input: $input) { id } }"


@pytest.fixture(scope="module")
def idle(tmp_path_factory):
    """No workers: accepted jobs stay queued, nothing renders."""
    tmp = tmp_path_factory.mktemp("newcomer")
    srv = StillmotionServer(
        database_url=f"sqlite:///{tmp / 'stillmotion.db'}", data_dir=tmp, workers=0
    ).start()
    yield srv
    srv.close()


@pytest.fixture
def client(idle):
    with idle.client(idle.create_key(f"new-{uuid.uuid4().hex[:8]}", credits=1000)) as c:
        yield c


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    err = response.json()["errors"][0]
    assert err["extensions"]["code"] == code, err
    return err


def _balance(client) -> int:
    return client.get("/v1/account").json()["data"]["account"]["creditBalance"]


# --- URL_NOT_ALLOWED says which field and how to allow it -------------------------------------

LOOPBACK = "http://127.0.0.1:9/photo.jpg"


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("rest-imageUrl", "imageUrl"),
        ("rest-image", "image"),
        ("rest-webhookUrl", "webhookUrl"),
        ("graphql-generate-imageUrl", "imageUrl"),
        ("graphql-generate-webhookUrl", "webhookUrl"),
        ("graphql-animate-imageUrl", "imageUrl"),
        ("rest-redirect-to-loopback", "imageUrl"),
    ],
)
def test_refused_address_names_the_field_and_the_setting(client, image_server, where, field):
    if where.startswith("rest"):
        body = small_request(image_server)
        if where == "rest-image":
            body.pop("imageUrl")
            body["image"] = LOOPBACK
        elif where == "rest-webhookUrl":
            body["webhookUrl"] = LOOPBACK
        elif where == "rest-redirect-to-loopback":
            body["imageUrl"] = image_server.url(f"/redirect?to={LOOPBACK}")
        else:
            body["imageUrl"] = LOOPBACK
        response = client.post("/v1/image_to_video", json=body)
    elif where.startswith("graphql-generate"):
        gql = small_gql_input(image_server)
        if field == "webhookUrl":
            gql["webhookUrl"] = LOOPBACK
        else:
            gql["input"]["imageUrl"] = LOOPBACK
        response = client.post("/graphql", json={"query": GENERATE, "variables": {"input": gql}})
    else:
        animate = {"service": "runway-i2v", "imageUrl": LOOPBACK, "version": "gen-2"}
        response = client.post("/graphql", json={"query": ANIMATE, "variables": {"input": animate}})
    err = _error(response, 400, "URL_NOT_ALLOWED")
    assert err["extensions"]["field"] == field
    assert err["message"].startswith(f"{field}: "), err["message"]
    assert "STILLMOTION_ALLOW_NETWORKS" in err["message"]
    # and, for an image, how to send a local file instead
    hinted = "data:" in err["message"] and "/v1/uploads" in err["message"]
    assert hinted == (field != "webhookUrl"), err["message"]


def test_refused_scheme_names_the_field(client, image_server):
    body = small_request(image_server, imageUrl="ftp://127.0.0.2/photo.jpg")
    err = _error(client.post("/v1/image_to_video", json=body), 400, "URL_NOT_ALLOWED")
    assert err["extensions"]["field"] == "imageUrl"
    assert err["message"].startswith("imageUrl: ")
    body = small_request(image_server, webhookUrl="file:///etc/passwd")
    err = _error(client.post("/v1/image_to_video", json=body), 400, "URL_NOT_ALLOWED")
    assert err["extensions"]["field"] == "webhookUrl"


def test_local_photo_as_upload_and_as_data_uri_is_accepted(client):
    """The two ways the README's quick start sends a photo from disk."""
    photo = photo_bytes("astronaut", size=256)
    uploaded = client.post("/v1/uploads", files={"file": ("photo.jpg", photo, "image/jpeg")})
    assert uploaded.status_code == 201, uploaded.text
    uri = uploaded.json()["data"]["upload"]["uri"]
    data_uri = "data:image/jpeg;base64," + base64.b64encode(photo).decode()
    for image in (uri, data_uri):
        body = {"service": "runway-i2v", "prompt": "slow push in", "imageUrl": image}
        response = client.post("/v1/image_to_video", json=body)
        assert response.status_code == 202, response.text


# --- unknown REST fields ----------------------------------------------------------------------


def test_unknown_rest_field_is_named_in_a_warning_header(client, image_server):
    before = _balance(client)
    body = small_request(image_server, version="gen-2")
    body.pop("duration")
    body["durationSeconds"] = 3
    response = client.post("/v1/image_to_video", json=body)
    assert response.status_code == 202, response.text
    warning = response.headers["Stillmotion-Warning"]
    assert '"durationSeconds"' in warning and "ignored" in warning
    assert 'did you mean "duration"' in warning
    # Still accepted as before (seed clients keep working): the default 5 s, charged as such.
    gen = response.json()["data"]["imagevideo"]
    assert gen["duration"] == 5 and before - _balance(client) == gen["creditCost"] == 10
    # A request with known fields only carries no warning.
    clean = client.post("/v1/image_to_video", json=small_request(image_server))
    assert clean.status_code == 202 and "Stillmotion-Warning" not in clean.headers


def test_warning_header_is_bounded_and_escaped(client, image_server):
    body = small_request(image_server, **{f"x{i}": i for i in range(2000)})
    body["evil\r\nSet-Cookie: a=b"] = 1
    body["ünïcode"] = 1
    response = client.post("/v1/image_to_video", json=body)
    assert response.status_code == 202, response.text
    warning = response.headers["Stillmotion-Warning"]
    assert "set-cookie" not in response.headers
    assert len(warning) < 1000 and warning.isascii()
    assert '"x0"' in warning and "more" in warning


@pytest.mark.parametrize("flag", ["true", "1", "TRUE"])
def test_strict_mode_refuses_unknown_fields_naming_them(client, image_server, flag):
    before = _balance(client)
    body = small_request(image_server)
    body.pop("duration")
    body["durationSeconds"] = 3
    response = client.post("/v1/image_to_video", json=body, headers={"Stillmotion-Strict": flag})
    err = _error(response, 400, "VALIDATION_ERROR")
    assert err["extensions"]["field"] == "durationSeconds"
    assert "durationSeconds" in err["message"] and '"duration"' in err["message"]
    assert _balance(client) == before
    # Strict mode accepts a request whose fields are all known.
    ok = client.post(
        "/v1/image_to_video", json=small_request(image_server), headers={"Stillmotion-Strict": flag}
    )
    assert ok.status_code == 202, ok.text


def test_strict_header_with_a_bad_value_is_a_400(client, image_server):
    response = client.post(
        "/v1/image_to_video",
        json=small_request(image_server),
        headers={"Stillmotion-Strict": "perhaps"},
    )
    err = _error(response, 400, "VALIDATION_ERROR")
    assert err["extensions"]["field"] == "Stillmotion-Strict"


def test_graphql_unknown_input_field_is_already_an_error(client, image_server):
    """GraphQL input types are typed: a misspelled field is a validation error, named."""
    gql = small_gql_input(image_server)
    gql["options"]["durationSeconds"] = 3
    response = client.post("/graphql", json={"query": GENERATE, "variables": {"input": gql}})
    assert response.status_code == 400, response.text
    assert "durationSeconds" in response.json()["errors"][0]["message"]


# --- 402 with numbers in the message ----------------------------------------------------------


def test_insufficient_credits_message_has_the_numbers(idle, image_server):
    key = idle.create_key(f"poor-{uuid.uuid4().hex[:8]}", credits=3)
    with idle.client(key) as client:
        rest = client.post("/v1/image_to_video", json=small_request(image_server))  # 4 credits
        gql = client.post(
            "/graphql",
            json={"query": GENERATE, "variables": {"input": small_gql_input(image_server)}},
        )
    for response in (rest, gql):
        err = _error(response, 402, "INSUFFICIENT_CREDITS")
        assert "4 credits needed, 3 available" in err["message"], err["message"]
        assert err["extensions"]["creditsRequired"] == 4
        assert err["extensions"]["creditsAvailable"] == 3
