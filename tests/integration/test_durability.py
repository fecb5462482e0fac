"""Nothing accepted is lost: a worker killed mid-render, a server restarted or killed."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import select

from stillmotion.db import Database
from stillmotion.generations.models import Generation
from tests.support import api
from tests.support.video import SIZES, check_video

pytestmark = pytest.mark.slow

# Long enough a render that a process can be killed in the middle of it: 10 s of 1080p at the
# production encoder preset takes tens of seconds here.
SLOW_RENDER = {"version": "gen-3", "duration": 10}
SLOW_ENV = {"STILLMOTION_X264_PRESET": "medium"}
# Renders here take a while: wait longer, and poll well inside the pro plan's read limit.
SLOW_WAIT = {"timeout": 180, "interval": 0.2}


def _rendering(gen: dict) -> bool:
    return gen["stage"] == "rendering" and gen["progress"] > 0.05


def _submit(client, image_url: str, **extra) -> str:
    body = {
        "service": "runway-i2v",
        "prompt": "slow push in",
        "imageUrl": image_url,
        "version": "gen-2",
        "duration": 4,
        **extra,
    }
    response = client.post("/v1/image_to_video", json=body)
    assert response.status_code == 202, response.text
    return response.json()["data"]["imagevideo"]["id"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_worker_killed_mid_render_is_picked_up_again(make_server, image_server, backend):
    srv = make_server(backend, workers=0, env=SLOW_ENV).start()
    key = srv.create_key("kill9")
    with srv.client(key) as client:
        gen_id = _submit(client, image_server.url("/astronaut.jpg"), **SLOW_RENDER)
        first = srv.worker_process()
        rendering = api.wait_until(client, gen_id, _rendering, **SLOW_WAIT)
        first.send_signal(signal.SIGKILL)
        first.wait()
        # The job is still accepted and unfinished; nobody renders it until the lease expires.
        assert api.generation(client, gen_id)["status"] == "processing"
        second = srv.worker_process()
        try:
            done = api.wait_finished(client, gen_id, **SLOW_WAIT)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    assert done["status"] == "completed", done
    assert done["progress"] == 1.0 and done["progress"] >= rendering["progress"]
    check_video(done["url"], width=1920, height=1080, frames=10 * 24)
    db = Database(srv.database_url)
    with db.session() as session:
        row = session.scalar(select(Generation).where(Generation.id == gen_id))
        assert row.attempts == 2
    db.dispose()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_restarting_the_server_loses_no_accepted_job(make_server, image_server, sig):
    srv = make_server("sqlite", workers=0).start()
    key = srv.create_key("restart")
    with srv.client(key) as client:
        ids = [
            _submit(client, image_server.url("/astronaut-small.jpg"), duration=2) for _ in range(3)
        ]
    srv.stop(sig)
    srv.workers = 1
    srv.env["STILLMOTION_WORKERS"] = "1"
    srv.start()
    with srv.client(key) as client:
        for gen_id in ids:
            done = api.wait_finished(client, gen_id, **SLOW_WAIT)
            assert done["status"] == "completed", done
            width, height = SIZES[("gen-2", "16:9")]
            check_video(done["url"], width=width, height=height, frames=48)


def test_server_killed_mid_render_finishes_after_restart(make_server, image_server):
    srv = make_server("sqlite", workers=1, env=SLOW_ENV).start()
    key = srv.create_key("restart-kill")
    with srv.client(key) as client:
        gen_id = _submit(client, image_server.url("/astronaut.jpg"), **SLOW_RENDER)
        api.wait_until(client, gen_id, _rendering, **SLOW_WAIT)
    srv.stop(signal.SIGKILL)
    srv.start()
    with srv.client(key) as client:
        done = api.wait_finished(client, gen_id, **SLOW_WAIT)
    assert done["status"] == "completed", done


def test_graceful_shutdown_hands_the_job_back(make_server, image_server):
    srv = make_server("sqlite", workers=1, env=SLOW_ENV).start()
    key = srv.create_key("graceful")
    with srv.client(key) as client:
        gen_id = _submit(client, image_server.url("/astronaut.jpg"), **SLOW_RENDER)
        api.wait_until(client, gen_id, _rendering, **SLOW_WAIT)
    srv.stop(signal.SIGTERM)
    db = Database(srv.database_url)
    with db.session() as session:
        row = session.scalar(select(Generation).where(Generation.id == gen_id))
        # back in the queue at once, not waiting for a lease to expire; the attempt not counted
        assert (row.status, row.stage, row.lease_owner, row.attempts) == (
            "processing",
            "queued",
            None,
            0,
        )
    srv.start()
    with srv.client(key) as client:
        done = api.wait_finished(client, gen_id, **SLOW_WAIT)
    assert done["status"] == "completed", done
    with db.session() as session:
        assert session.scalar(select(Generation.attempts).where(Generation.id == gen_id)) == 1
    db.dispose()
