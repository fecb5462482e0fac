"""The Runway provider run by real workers (issue 11): a `stillmotion serve --workers 0`
subprocess takes the creates, a `stillmotion worker` subprocess renders them through a fake
Runway API on 127.0.0.2, on SQLite and PostgreSQL.

Each test scripts the upstream, checks our job's outcome and its credits, and counts what the
fake was asked: one upstream create per job attempt, polls at the configured pace, one
download, one DELETE for a cancel, and no breach of Runway's contract.
"""

from __future__ import annotations

import io
import itertools
import signal
import subprocess
import time

import av
import httpx
import pytest
from sqlalchemy import select

from stillmotion.db import Database
from stillmotion.generations.models import Generation
from tests.support import api
from tests.support.fake_runway import PENDING, THROTTLED, FakeRunway, failed, running, succeeded

pytestmark = pytest.mark.slow

INTERVAL = 0.2
KEY = "key_" + "7a" * 64
WAIT = {"timeout": 90, "interval": 0.1}


@pytest.fixture
def fake():
    server = FakeRunway(api_key=KEY, min_poll_interval=INTERVAL)
    yield server
    server.close()


def _server(make_server, backend, fake, tmp_path):
    services = tmp_path / f"services-{backend}.toml"
    services.write_text(
        "[services.runway-i2v]\n"
        'provider = "runway"\n'
        'model = "gen4_turbo"\n'
        f'base_url = "{fake.base_url}"\n'
        'api_key_env = "RUNWAY_WORKER_TEST_KEY"\n'
        f"poll_interval = {INTERVAL}\n"
        "deadline_seconds = 30\n"
    )
    srv = make_server(
        backend,
        workers=0,
        env={
            "STILLMOTION_SERVICES": str(services),
            "RUNWAY_WORKER_TEST_KEY": KEY,
            # The fake serves its outputs on 127.0.0.2 too: allow-listed by the operator.
            "STILLMOTION_ALLOW_NETWORKS": "127.0.0.2/32",
        },
    )
    return srv.start()


def _submit(client, image_server, **fields) -> dict:
    body = {
        "service": "runway-i2v",
        "prompt": "a slow push in",
        "imageUrl": image_server.url("/astronaut-small.jpg"),
        "version": "gen-4",
        "duration": 5,
        "aspectRatio": "16:9",
        **fields,
    }
    response = client.post("/v1/image_to_video", json=body)
    assert response.status_code == 202, response.text
    return response.json()["data"]["imagevideo"]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _credits(client, gen_id: str) -> list[tuple[str, int]]:
    return [(e["kind"], e["amount"]) for e in api.ledger(client) if e["generationId"] == gen_id]


def _check_video(url: str, *, width: int, height: int, frames: int) -> None:
    """Our stored copy of the upstream's output: an MP4 that decodes, at the fake's size.
    (Not `tests.support.video.check_video`: that holds our own encoder's faststart layout,
    which an upstream's file need not have.)"""
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] in ("video/mp4", "application/mp4")
    with av.open(io.BytesIO(response.content)) as container:
        assert "mp4" in container.format.name.split(",")
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        decoded = sum(1 for _ in container.decode(stream))
    assert size == (width, height)
    assert decoded == frames


def _row(srv, gen_id: str) -> Generation:
    db = Database(srv.database_url)
    try:
        with db.session() as session:
            row = session.scalar(select(Generation).where(Generation.id == gen_id))
            session.expunge(row)
            return row
    finally:
        db.dispose()


def _polls_at_pace(fake: FakeRunway) -> None:
    """Every task's GETs no closer than the interval (the fake checks) nor far beyond it."""
    by_task: dict[str, list[float]] = {}
    for r in fake.of("get"):
        by_task.setdefault(r.path, []).append(r.at)
    for times in by_task.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(INTERVAL <= gap < INTERVAL * 1.5 + 0.5 for gap in gaps), gaps


BACKENDS = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])


@BACKENDS
def test_a_runway_job_completes(make_server, image_server, fake, tmp_path, backend):
    srv = _server(make_server, backend, fake, tmp_path)
    fake.script(PENDING, THROTTLED, running(0.4), running(0.8), succeeded())
    key = srv.create_key("runway-ok")
    worker = srv.worker_process()
    try:
        with srv.client(key) as client:
            gen = _submit(client, image_server)
            stages = set()

            def seen(g: dict) -> bool:
                stages.add(g["stage"])
                return api.finished(g)

            done = api.wait_until(client, gen["id"], seen, **WAIT)
            assert done["status"] == "completed", done
            assert _credits(client, gen["id"]) == [("charge", -gen["creditCost"])]
    finally:
        _stop(worker)
    _check_video(done["url"], width=128, height=72, frames=5 * 24)
    assert done["metadata"]["width"] == 128 and done["metadata"]["height"] == 72
    assert {"rendering"} <= stages  # at least one upstream RUNNING poll was seen
    assert fake.counts() == {"create": 1, "get": 5, "output": 1}
    _polls_at_pace(fake)
    assert fake.violations == []
    row = _row(srv, gen["id"])
    assert row.attempts == 1
    assert row.provider_state == {"task_id": next(iter(fake.tasks))}


@BACKENDS
def test_an_upstream_safety_failure_fails_the_job_refunded(
    make_server, image_server, fake, tmp_path, backend
):
    srv = _server(make_server, backend, fake, tmp_path)
    fake.script(PENDING, failed("SAFETY.INPUT.IMAGE", "The image was flagged."))
    key = srv.create_key("runway-safety")
    worker = srv.worker_process()
    try:
        with srv.client(key) as client:
            gen = _submit(client, image_server)
            done = api.wait_finished(client, gen["id"], **WAIT)
            assert done["status"] == "failed", done
            assert done["error"]["code"] == "CONTENT_MODERATION"
            assert "flagged" in done["error"]["message"]
            cost = gen["creditCost"]
            assert sorted(_credits(client, gen["id"])) == [("charge", -cost), ("refund", cost)]
    finally:
        _stop(worker)
    assert fake.count("create") == 1  # not retried
    assert fake.violations == []


@BACKENDS
def test_an_internal_failure_is_retried_in_a_new_attempt(
    make_server, image_server, fake, tmp_path, backend
):
    srv = _server(make_server, backend, fake, tmp_path)
    fake.script(running(0.3), failed("INTERNAL.BAD_OUTPUT.CODE01", "Output rejected."))
    fake.script(running(0.5), succeeded())
    key = srv.create_key("runway-internal")
    worker = srv.worker_process()
    try:
        with srv.client(key) as client:
            gen = _submit(client, image_server)
            done = api.wait_finished(client, gen["id"], **WAIT)
            assert done["status"] == "completed", done
            assert _credits(client, gen["id"]) == [("charge", -gen["creditCost"])]
    finally:
        _stop(worker)
    assert fake.count("create") == 2
    assert fake.count("output") == 1
    _polls_at_pace(fake)
    assert fake.violations == []
    assert _row(srv, gen["id"]).attempts == 2


@BACKENDS
def test_a_worker_killed_mid_upstream_resumes_the_same_task(
    make_server, image_server, fake, tmp_path, backend
):
    srv = _server(make_server, backend, fake, tmp_path)
    # The task advances one state per GET, so it stays RUNNING while no worker polls it.
    fake.script(PENDING, running(0.2), running(0.4), running(0.6), running(0.8), succeeded())
    key = srv.create_key("runway-kill9")
    with srv.client(key) as client:
        gen = _submit(client, image_server)
        first = srv.worker_process()
        try:
            api.wait_until(
                client, gen["id"], lambda g: g["stage"] == "rendering" and g["progress"] > 0, **WAIT
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert api.generation(client, gen["id"])["status"] == "processing"
        assert fake.count("create") == 1
        second = srv.worker_process()
        try:
            done = api.wait_finished(client, gen["id"], **WAIT)
        finally:
            _stop(second)
        assert done["status"] == "completed", done
        assert _credits(client, gen["id"]) == [("charge", -gen["creditCost"])]
    _check_video(done["url"], width=128, height=72, frames=5 * 24)
    assert fake.count("create") == 1  # the second attempt resumed the first task
    assert fake.count("output") == 1
    assert fake.violations == []
    assert _row(srv, gen["id"]).attempts == 2


@BACKENDS
def test_cancelling_while_upstream_runs_deletes_the_task_and_refunds(
    make_server, image_server, fake, tmp_path, backend
):
    srv = _server(make_server, backend, fake, tmp_path)
    fake.script(PENDING, running(0.3))  # RUNNING until cancelled
    key = srv.create_key("runway-cancel")
    worker = srv.worker_process()
    try:
        with srv.client(key) as client:
            gen = _submit(client, image_server)
            api.wait_until(
                client, gen["id"], lambda g: g["stage"] == "rendering" and g["progress"] > 0, **WAIT
            )
            response = client.delete(f"/v1/image_to_video/{gen['id']}")
            assert response.status_code == 200, response.text
            done = api.generation(client, gen["id"])
            assert done["status"] == "cancelled", done
            cost = gen["creditCost"]
            assert sorted(_credits(client, gen["id"])) == [("charge", -cost), ("refund", cost)]
            deadline = 10 / INTERVAL
            while fake.count("delete") == 0 and deadline > 0:
                deadline -= 1
                time.sleep(INTERVAL)
        # The worker goes on to other work: nothing more is asked upstream for this task.
        time.sleep(INTERVAL * 4)
    finally:
        _stop(worker)
    deletes = fake.of("delete")
    assert len(deletes) == 1, fake.counts()
    task_id = next(iter(fake.tasks))
    assert deletes[0].path.endswith(f"/v1/tasks/{task_id}")
    assert fake.count("create") == 1 and fake.count("output") == 0
    assert fake.violations == []


# The rest of issue 11's scripted upstream answers, each through a real worker on both
# databases: (how the fake is scripted, the job's status, its error code or None).
UPSTREAM_CASES = {
    "429-with-retry-after": (
        lambda f: f.answer("create", 429, headers={"Retry-After": "1"}),
        "completed",
        None,
    ),
    "503-twice": (lambda f: f.answer("get", 503, times=2), "completed", None),
    "401": (
        lambda f: f.answer("create", 401, {"error": "Invalid API key"}),
        "failed",
        "PROVIDER_UNAVAILABLE",
    ),
    "403-model-variant": (
        lambda f: f.answer("create", 403, {"error": "Model variant gen4_turbo is not available"}),
        "failed",
        "PROVIDER_UNAVAILABLE",
    ),
    "output-404": (
        lambda f: f.script(running(0.5), succeeded("missing")),
        "failed",
        "PROVIDER_ERROR",
    ),
    "output-not-video": (
        lambda f: f.script(running(0.5), succeeded("not_video")),
        "failed",
        "PROVIDER_ERROR",
    ),
}


@BACKENDS
@pytest.mark.parametrize("case", sorted(UPSTREAM_CASES))
def test_each_scripted_upstream_answer_ends_the_job_as_documented(
    make_server, image_server, fake, tmp_path, backend, case
):
    script, status, code = UPSTREAM_CASES[case]
    script(fake)
    srv = _server(make_server, backend, fake, tmp_path)
    key = srv.create_key(f"runway-{case}")
    worker = srv.worker_process()
    try:
        with srv.client(key) as client:
            gen = _submit(client, image_server)
            done = api.wait_finished(client, gen["id"], **WAIT)
            assert done["status"] == status, done
            cost = gen["creditCost"]
            if code is None:
                assert _credits(client, gen["id"]) == [("charge", -cost)]
            else:
                assert done["error"]["code"] == code, done
                assert sorted(_credits(client, gen["id"])) == [("charge", -cost), ("refund", cost)]
    finally:
        _stop(worker)
    # One upstream task per job whatever the answers (a refused create makes none).
    assert len(fake.tasks) == (1 if status == "completed" or case.startswith("output") else 0)
    if case == "429-with-retry-after":
        first, second = fake.of("create")[:2]
        assert second.at - first.at >= 1.0  # Retry-After honoured
    assert fake.violations == []
