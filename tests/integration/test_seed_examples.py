"""The seed document's four request examples, sent exactly as written (only the URL and the key
changed) to a running server, polled as the seed polls, ending in a decoded MP4."""

from __future__ import annotations

import httpx
import pytest

from tests.support.video import SIZES, check_video, poll_like_the_seed

pytestmark = pytest.mark.slow

GENERATE_QUERY = (
    "mutation Generate($input: GenerateInput!) { generate(input: $input) "
    "{ id status type provider url metadata creditCost } }"
)
ANIMATE_QUERY = """
        mutation AnimateImage($input: ImageAnimationInput!) {
          animateImage(input: $input) {
            id
            status
            url
          }
        }
      """
PYTHON_QUERY = """
mutation Generate($input: GenerateInput!) {
  generate(input: $input) {
    id
    status
    type
    provider
    url
    metadata
    creditCost
  }
}
"""
TABLE_QUERY = """
mutation Generate($input: GenerateInput!) {
  generate(input: $input) {
    id
    status
    type
    provider
    url
    metadata
    creditCost
    createdAt
  }
}
"""


def _finish(srv, key, gen_id, *, version="gen-3", ratio="16:9", duration=5):
    with srv.client(key) as client:
        done = poll_like_the_seed(client, gen_id)
    assert done["status"] == "completed", done
    assert done["url"].startswith(srv.url + "/media/")
    assert done["progress"] == 1.0 and done["stage"] == "done"
    width, height = SIZES[(version, ratio)]
    check_video(done["url"], width=width, height=height, frames=duration * 24)
    meta = done["metadata"]
    assert (meta["width"], meta["height"], meta["frames"], meta["fps"]) == (
        width,
        height,
        duration * 24,
        24,
    )
    assert meta["bytes"] > 10_000
    poster = httpx.get(done["posterUrl"], timeout=10)
    assert poster.status_code == 200 and poster.content[:3] == b"\xff\xd8\xff"
    return done


def test_curl_generate_with_idempotency_key(backend_server, image_server):
    key = backend_server.create_key("seed-curl")
    body = {
        "query": GENERATE_QUERY,
        "variables": {
            "input": {
                "type": "VIDEO",
                "provider": "runway-i2v",
                "input": {"image": image_server.url("/astronaut.jpg")},
                "options": {"duration": 5, "motionIntensity": "medium"},
            }
        },
    }
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
        "Idempotency-Key": "unique-request-id-123",
    }
    response = httpx.post(backend_server.url + "/graphql", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    gen = response.json()["data"]["generate"]
    assert gen["status"] == "processing" and gen["type"] == "VIDEO"
    assert gen["provider"] == "runway-i2v" and gen["url"] is None
    assert gen["creditCost"] == 25
    assert gen["metadata"]["width"] == 1920
    _finish(backend_server, key, gen["id"])


def test_javascript_animate_image(backend_server, image_server):
    key = backend_server.create_key("seed-js")
    body = {
        "query": ANIMATE_QUERY,
        "variables": {
            "input": {
                "service": "runway-i2v",
                "imageUrl": image_server.url("/chelsea.jpg"),
                "duration": 5,
                "motionIntensity": "medium",
            }
        },
    }
    response = httpx.post(
        backend_server.url + "/graphql",
        json=body,
        timeout=60,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    data = response.json()
    gen = data["data"]["animateImage"]
    assert set(gen) == {"id", "status", "url"} and gen["status"] == "processing"
    _finish(backend_server, key, gen["id"])


def test_python_generate(backend_server, image_server):
    key = backend_server.create_key("seed-python")
    variables = {
        "input": {
            "type": "VIDEO",
            "provider": "runway-i2v",
            "input": {"imageUrl": image_server.url("/coffee.png")},
            "options": {"duration": 5, "motionIntensity": "medium"},
        }
    }
    response = httpx.post(
        backend_server.url + "/graphql",
        json={"query": PYTHON_QUERY, "variables": variables},
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        timeout=60,
    )
    data = response.json()
    assert response.status_code == 200, data
    gen = data["data"]["generate"]
    assert gen["creditCost"] == 25
    _finish(backend_server, key, gen["id"])


def test_parameter_table_gen4_graphql(backend_server, image_server):
    key = backend_server.create_key("seed-gen4")
    variables = {
        "input": {
            "type": "VIDEO",
            "provider": "runway-i2v",
            "input": {"imageUrl": image_server.url("/astronaut.jpg")},
            "options": {"duration": 5, "motionIntensity": "medium", "version": "gen-4"},
        }
    }
    response = httpx.post(
        backend_server.url + "/graphql",
        json={"query": TABLE_QUERY, "variables": variables},
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        timeout=60,
    )
    gen = response.json()["data"]["generate"]
    assert gen["creditCost"] == 100 and gen["createdAt"].endswith("Z")
    _finish(backend_server, key, gen["id"], version="gen-4")


def test_rest_parameter_table(backend_server, image_server):
    key = backend_server.create_key("seed-rest")
    body = {
        "service": "runway-i2v",
        "prompt": "a slow push in on her face, golden hour",
        "imageUrl": image_server.url("/astronaut.jpg"),
        "duration": 5,
        "aspectRatio": "9:16",
        "version": "gen-3",
    }
    response = httpx.post(
        backend_server.url + "/v1/image_to_video", json=body, headers={"X-API-Key": key}, timeout=60
    )
    assert response.status_code == 202, response.text
    gen = response.json()["data"]["imagevideo"]
    assert response.headers["location"].endswith(f"/v1/image_to_video/{gen['id']}")
    assert gen["status"] == "processing" and gen["url"] is None
    assert {"id", "status", "url", "webhookUrl", "createdAt"} <= set(gen)
    done = _finish(backend_server, key, gen["id"], ratio="9:16")
    assert done["duration"] == 5
