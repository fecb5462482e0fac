"""*Extension*: an explicit output size (`width` and `height`, even, 256 … 2560), which the
Runway-compatible pixel ratios (1104:832, 1584:672, …) need: the MP4 is exactly that size."""

from __future__ import annotations

import pytest

from tests.support.api import wait_finished
from tests.support.servers import small_gql_input, small_request
from tests.support.video import check_video


@pytest.mark.slow
def test_the_clip_is_exactly_the_size_asked_for(server, image_server):
    key = server.create_key("sized")
    with server.client(key) as client:
        created = client.post(
            "/v1/image_to_video", json=small_request(image_server, width=368, height=272)
        )
        assert created.status_code == 202, created.text
        gen = created.json()["data"]["imagevideo"]
        assert (gen["metadata"]["width"], gen["metadata"]["height"]) == (368, 272)
        done = wait_finished(client, gen["id"])
        assert done["status"] == "completed", done
    check_video(done["url"], width=368, height=272, frames=2 * 24)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"width": 368}, "height"),
        ({"height": 272}, "height"),
        ({"width": 367, "height": 272}, "width"),
        ({"width": 128, "height": 272}, "width"),
        ({"width": 368, "height": 4000}, "height"),
    ],
)
def test_a_size_out_of_its_rules_is_400_naming_the_field(idle_server, image_server, fields, field):
    key = idle_server.create_key("sized-bad")
    with idle_server.client(key) as client:
        response = client.post("/v1/image_to_video", json=small_request(image_server, **fields))
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["extensions"]["field"] == field
        gql = client.post(
            "/graphql",
            json={
                "query": "mutation($i: GenerateInput!) { generate(input: $i) { id } }",
                "variables": {"i": small_gql_input(image_server, **fields)},
            },
        )
        assert gql.status_code == 400, gql.text
