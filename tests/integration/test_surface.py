"""The server's other surfaces: health, docs, GraphiQL, media ranges, and the key commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from tests.support import api


def test_health_docs_and_graphiql(server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").json() == {"status": "ok"}
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/image_to_video" in spec["paths"] and "/v1/uploads" in spec["paths"]
    body = spec["paths"]["/v1/image_to_video"]["post"]["requestBody"]
    assert "service" in body["content"]["application/json"]["schema"]["properties"]
    assert "swagger" in httpx.get(server.url + "/docs").text.lower()
    page = httpx.get(server.url + "/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    metrics = httpx.get(server.url + "/metrics")
    assert metrics.status_code == 200


def test_media_is_served_with_ranges(server, image_server):
    key = server.create_key("media")
    with server.client(key) as client:
        gen = client.post(
            "/v1/image_to_video",
            json={
                "service": "runway-i2v",
                "prompt": "",
                "version": "gen-2",
                "duration": 2,
                "imageUrl": image_server.url("/astronaut-small.jpg"),
            },
        ).json()["data"]["imagevideo"]
        gen = api.wait_finished(client, gen["id"], interval=0.3)
    assert gen["status"] == "completed", gen
    full = httpx.get(gen["url"])
    assert full.headers["accept-ranges"] == "bytes"
    part = httpx.get(gen["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == full.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(full.content)}"
    # sources are not published
    assert httpx.get(server.url + "/media/sources/x.jpg").status_code == 404


def _cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stillmotion", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_create_list_revoke(server):
    created = _cli(
        server,
        "keys",
        "create",
        "--account",
        "cli-user",
        "--plan",
        "starter",
        "--credits",
        "50",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    key = out["key"]
    assert key.startswith("sm_") and len(key) == 43 and out["account"] == "cli-user"
    account = httpx.get(server.url + "/v1/account", headers={"X-API-Key": key}).json()
    assert account["data"]["account"]["plan"] == "starter"
    assert account["data"]["account"]["creditBalance"] == 50
    listed = _cli(server, "keys", "list", "--account", "cli-user")
    assert key[:8] in listed.stdout and key not in listed.stdout
    revoked = _cli(server, "keys", "revoke", key[:8])
    assert revoked.returncode == 0, revoked.stderr
    # An API process trusts a key it has just looked up for at most a second (the read path's
    # cache); after that a revoked key is a wrong key.
    time.sleep(1.1)
    response = httpx.get(server.url + "/v1/account", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401


@pytest.mark.parametrize("plan", ["gold"])
def test_keys_create_refuses_unknown_plan(server, plan):
    result = _cli(server, "keys", "create", "--account", "x", "--plan", plan)
    assert result.returncode == 2 and "unknown plan" in result.stderr
