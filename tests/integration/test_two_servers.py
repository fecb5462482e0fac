"""A real upstream (issues 11 and 12): server A sends its `runway-i2v` jobs to server B through
the Runway provider, and B takes them on its Runway-compatible surface and renders them with
its built-in engine. One upstream create, B's own credits charged, A's job completed with B's
MP4 stored on A."""

from __future__ import annotations

import pytest

from tests.support import api
from tests.support.video import check_video

pytestmark = pytest.mark.slow


def test_server_a_renders_through_server_b(make_server, image_server, tmp_path):
    b = make_server("sqlite", workers=1).start()
    b_key = b.create_key("upstream-b", credits=1000)
    services = tmp_path / "a-services.toml"
    services.write_text(
        "[services.runway-i2v]\n"
        'provider = "runway"\n'
        'model = "gen4_turbo"\n'
        f'base_url = "{b.url}/runway"\n'
        'api_key_env = "UPSTREAM_B_KEY"\n'
        "poll_interval = 0.5\n"
    )
    a = make_server(
        "sqlite",
        workers=0,
        env={
            "STILLMOTION_SERVICES": str(services),
            "UPSTREAM_B_KEY": b_key,
            # B serves its MP4 on 127.0.0.1: the operator allows it for the download.
            "STILLMOTION_ALLOW_NETWORKS": "127.0.0.2/32,127.0.0.1/32",
        },
    ).start()
    a_key = a.create_key("downstream-a", credits=1000)
    worker = a.worker_process()
    try:
        with a.client(a_key) as client:
            created = client.post(
                "/v1/image_to_video",
                json={
                    "service": "runway-i2v",
                    "prompt": "slow push in",
                    "imageUrl": image_server.url("/astronaut-small.jpg"),
                    "version": "gen-4",
                    "duration": 2,
                },
            )
            assert created.status_code == 202, created.text
            gen = created.json()["data"]["imagevideo"]
            done = api.wait_finished(client, gen["id"], timeout=240, interval=0.5)
            assert done["status"] == "completed", done
            assert done["url"].startswith(a.url)  # stored on A, not a link to B
            a_balance = api.account(client)["creditBalance"]
    finally:
        worker.terminate()
        worker.wait(30)
    check_video(done["url"], width=1280, height=720, frames=2 * 24)
    assert a_balance == 1000 - gen["creditCost"]
    with b.client(b_key) as client:
        jobs = api.jobs(client)
        assert len(jobs) == 1  # one upstream create
        assert jobs[0]["status"] == "completed"
        assert (jobs[0]["metadata"]["width"], jobs[0]["metadata"]["height"]) == (1280, 720)
        assert api.account(client)["creditBalance"] == 1000 - jobs[0]["creditCost"]
