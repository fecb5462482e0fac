"""The Runway-compatible surface (`/runway`, docs/api.md) with Runway's own SDKs, pinned:
`runwayml` 5.24.0 and `@runwayml/sdk` 4.20.1 (tests/node), against a real `stillmotion serve`
on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import runwayml
from runwayml.lib import polling

from tests.support import api
from tests.support.servers import ROOT, StillmotionServer, photo_bytes
from tests.support.video import check_video

NODE_DIR = ROOT / "tests" / "node"
# gen3a_turbo → gen-3; 5 s at 5 credits a second (the default prices).
COST = 25
BODY = {"model": "gen3a_turbo", "ratio": "1280:768", "duration": 5}


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    """The SDK waits 4.5 … 7.5 s between polls; a render here takes about a second."""
    monkeypatch.setattr(polling, "POLL_TIME", 0.2)
    monkeypatch.setattr(polling, "POLL_JITTER", 0.1)


def data_uri(image: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(image).decode()


PHOTO = data_uri(photo_bytes("astronaut", size=256))


def sdk(srv: StillmotionServer, key: str, **kw) -> runwayml.RunwayML:
    return runwayml.RunwayML(base_url=srv.url + "/runway", api_key=key, **kw)


def account_key(srv: StillmotionServer, prefix: str, *, credits: int = 10_000, **limits) -> str:
    """A key for a new account; `limits`: plan overrides (per_minute, concurrent, daily)."""
    from stillmotion.accounts.plans import set_overrides
    from stillmotion.db import Database

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    key = srv.create_key(name, plan="pro", credits=credits)
    if limits:
        db = Database(srv.database_url)
        try:
            with db.session(write=True) as session:
                set_overrides(session=session, account_name=name, **limits)
        finally:
            db.dispose()
    return key


def test_python_sdk_creates_from_a_data_uri_waits_and_the_output_decodes(backend_server):
    srv = backend_server
    key = account_key(srv, "rw-py")
    client = sdk(srv, key)
    task = client.image_to_video.create(
        model="gen3a_turbo",
        prompt_image=PHOTO,
        prompt_text="slow push in",
        ratio="1280:768",
        duration=5,
        seed=7,
        extra_body={"stillmotion": {"camera": {"zoom": 3}}},
    )
    assert task.estimated_cost.credits == COST
    done = task.wait_for_task_output(timeout=120)
    assert done.status == "SUCCEEDED" and done.cost.credits == COST
    check_video(done.output[0], width=1280, height=768, frames=5 * 24)
    # One platform: the native API reads the same job.
    with srv.client(key) as native:
        gen = api.generation(native, task.id)
        assert gen["status"] == "completed" and gen["url"] == done.output[0]
        assert gen["metadata"]["version"] == "gen-3" and gen["metadata"]["seed"] == 7
        assert [g["id"] for g in api.jobs(native)] == [task.id]
    assert client.organization.retrieve().credit_balance == 10_000 - COST


def test_node_sdk_creates_waits_and_the_output_decodes(backend_server):
    assert shutil.which("node"), "Node 20 is needed (make test installs tests/node)"
    assert (NODE_DIR / "node_modules" / "@runwayml" / "sdk").is_dir(), (
        "run `npm ci --prefix tests/node` (make test does)"
    )
    srv = backend_server
    key = account_key(srv, "rw-node")
    env = {
        **os.environ,
        "RUNWAY_BASE_URL": srv.url + "/runway",
        "RUNWAYML_API_SECRET": key,
        "PROMPT_IMAGE": PHOTO,
    }
    result = subprocess.run(
        ["node", "create_and_wait.mjs"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout)
    assert task["status"] == "SUCCEEDED" and task["cost"] == {"credits": COST}
    check_video(task["output"][0], width=768, height=1280, frames=5 * 24)
    with srv.client(key) as native:
        assert api.generation(native, task["id"])["metadata"]["aspectRatio"] == "9:16"


def test_a_failing_job_raises_task_failed_error_with_its_failure_code(idle_server):
    srv = idle_server
    key = account_key(srv, "rw-fail")
    image = photo_bytes("coffee", size=240)  # this test's alone: its stored copy is corrupted
    client = sdk(srv, key)
    task = client.image_to_video.create(model="gen3a_turbo", prompt_image=data_uri(image))
    stored = srv.data_dir / "media" / "sources" / f"{hashlib.sha256(image).hexdigest()}.jpg"
    assert stored.exists()
    stored.write_bytes(b"\xff\xd8\xff" + b"not a JPEG any more" * 100)
    worker = srv.worker_process()
    try:
        with pytest.raises(polling.TaskFailedError) as failed:
            task.wait_for_task_output(timeout=60)
    finally:
        worker.terminate()
        worker.wait(20)
    details = failed.value.task_details
    assert details.status == "FAILED"
    assert details.failure and details.failure_code.startswith(("INTERNAL", "INPUT_PREPROCESSING"))
    assert details.cost.credits == 0
    assert client.organization.retrieve().credit_balance == 10_000  # refunded


def test_queued_tasks_show_pending_and_throttled_and_delete_refunds(idle_server):
    srv = idle_server
    key = account_key(srv, "rw-queue", concurrent=1)
    client = sdk(srv, key)
    first = client.image_to_video.create(prompt_image=PHOTO, **BODY)
    second = client.image_to_video.create(prompt_image=PHOTO, **BODY)
    assert client.organization.retrieve().credit_balance == 10_000 - 2 * COST
    pending, throttled = client.tasks.retrieve(first.id), client.tasks.retrieve(second.id)
    assert pending.status == "PENDING" and pending.estimated_cost.credits == COST
    assert throttled.status == "THROTTLED"  # over the concurrency of 1, behind `first`
    raw = client.tasks.with_raw_response.retrieve(second.id).json()
    assert raw["stillmotion"]["queuePosition"] >= 2
    assert raw["createdAt"].endswith("Z")
    client.tasks.delete(first.id)
    cancelled = client.tasks.retrieve(first.id)
    assert cancelled.status == "CANCELLED" and cancelled.cost.credits == 0
    assert client.organization.retrieve().credit_balance == 10_000 - COST
    client.tasks.delete(first.id)  # a finished task: 204 again, nothing refunded twice
    client.tasks.delete(second.id)
    assert client.organization.retrieve().credit_balance == 10_000
    with srv.client(key) as native:
        refunds = [e for e in api.ledger(native) if e["kind"] == "refund"]
        assert sorted(e["generationId"] for e in refunds) == sorted([first.id, second.id])


def test_errors_are_runways_and_the_sdk_raises_its_own_exceptions(idle_server):
    srv = idle_server
    key = account_key(srv, "rw-err")
    client = sdk(srv, key, max_retries=0)
    with pytest.raises(runwayml.BadRequestError) as bad:
        client.image_to_video.create(model="gen4_turbo", prompt_image=PHOTO, ratio="16:9")
    message = bad.value.body["error"]
    assert "'ratio'" in message and "1280:720" in message and "1584:672" in message
    with pytest.raises(runwayml.BadRequestError, match="position 'last'"):
        client.image_to_video.create(
            model="gen4_turbo",
            prompt_image=[{"uri": PHOTO, "position": "first"}, {"uri": PHOTO, "position": "last"}],
            ratio="960:960",
        )
    with pytest.raises(runwayml.BadRequestError, match="Only HTTPS URLs"):
        client.image_to_video.create(
            model="gen4_turbo", prompt_image="http://example.com/a.jpg", ratio="960:960"
        )
    with pytest.raises(runwayml.BadRequestError, match="'duration'"):
        client.image_to_video.create(prompt_image=PHOTO, **{**BODY, "duration": 7})
    with pytest.raises(runwayml.BadRequestError, match=r"'stillmotion\.camera"):
        client.image_to_video.create(
            prompt_image=PHOTO, extra_body={"stillmotion": {"camera": {"zoom": 99}}}, **BODY
        )
    with pytest.raises(runwayml.PermissionDeniedError) as denied:
        client.image_to_video.create(model="gen3_alphaturbo", prompt_image=PHOTO)
    assert denied.value.body == {"error": "Model variant gen3_alphaturbo is not available"}
    with pytest.raises(runwayml.AuthenticationError):
        sdk(srv, "sm_not_a_key", max_retries=0).organization.retrieve()
    with pytest.raises(runwayml.NotFoundError):
        client.tasks.retrieve("gen_nosuchtask")
    other = sdk(srv, account_key(srv, "rw-other"))
    task = other.image_to_video.create(prompt_image=PHOTO, **BODY)
    with pytest.raises(runwayml.NotFoundError):
        client.tasks.retrieve(task.id)  # another account's
    with pytest.raises(runwayml.NotFoundError):
        client.tasks.delete(task.id)
    other.tasks.delete(task.id)
    # No credits: Runway's 400.
    broke = sdk(srv, account_key(srv, "rw-broke", credits=10), max_retries=0)
    with pytest.raises(runwayml.BadRequestError, match="Insufficient credits"):
        broke.image_to_video.create(prompt_image=PHOTO, **BODY)
    # X-Runway-Version: required; the 2024-09-13 version takes its own ratios.
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as raw:
        for headers in ({}, {"X-Runway-Version": "2023-01-01"}):
            r = raw.get("/runway/v1/organization", headers=headers)
            assert r.status_code == 400 and "X-Runway-Version" in r.json()["error"], r.text
        r = raw.get("/runway/v1/nothing", headers={"X-Runway-Version": "2024-11-06"})
        assert r.status_code == 404 and set(r.json()) == {"error"}
    legacy = client.with_options(default_headers={"X-Runway-Version": "2024-09-13"})
    old = legacy.image_to_video.create(model="gen3a_turbo", prompt_image=PHOTO, ratio="16:9")
    with srv.client(key) as native:
        gen = api.generation(native, old.id)
        assert (gen["metadata"]["width"], gen["metadata"]["height"]) == (1280, 768)
    with pytest.raises(runwayml.BadRequestError, match="allowed: 16:9, 9:16"):
        legacy.image_to_video.create(model="gen3a_turbo", prompt_image=PHOTO, ratio="1280:768")
    client.tasks.delete(old.id)


def test_rate_limits_are_429_and_the_daily_cap_says_do_not_retry(idle_server):
    srv = idle_server
    minute = sdk(srv, account_key(srv, "rw-rpm", per_minute=1), max_retries=0)
    minute.image_to_video.create(prompt_image=PHOTO, **BODY)
    with pytest.raises(runwayml.RateLimitError) as limited:
        minute.image_to_video.create(prompt_image=PHOTO, **BODY)
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    assert "x-should-retry" not in limited.value.response.headers
    assert set(limited.value.body) == {"error"}
    # The daily cap: the SDK's default retries do not retry it.
    sent: list[httpx.Request] = []
    counting = httpx.Client(event_hooks={"request": [sent.append]})
    daily = sdk(srv, account_key(srv, "rw-daily", daily=1), http_client=counting)
    daily.image_to_video.create(prompt_image=PHOTO, **BODY)
    with pytest.raises(runwayml.RateLimitError) as capped:
        daily.image_to_video.create(prompt_image=PHOTO, **BODY)
    assert len(sent) == 2  # one attempt each: the 429 was not retried (max_retries is 2)
    assert capped.value.response.headers["x-should-retry"] == "false"
    assert "Daily limit" in capped.value.body["error"]


def test_idempotency_key_is_honoured(idle_server):
    srv = idle_server
    key = account_key(srv, "rw-idem")
    client = sdk(srv, key)
    headers = {"Idempotency-Key": f"rw-{uuid.uuid4().hex}"}
    first = client.image_to_video.with_raw_response.create(
        prompt_image=PHOTO, extra_headers=headers, **BODY
    )
    again = client.image_to_video.with_raw_response.create(
        prompt_image=PHOTO, extra_headers=headers, **BODY
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    with pytest.raises(runwayml.UnprocessableEntityError):
        client.with_options(max_retries=0).image_to_video.create(
            prompt_image=PHOTO, extra_headers=headers, **{**BODY, "duration": 10}
        )
    assert client.organization.retrieve().credit_balance == 10_000 - COST
    client.tasks.delete(first.json()["id"])


def test_ten_creates_racing_over_both_surfaces_with_credits_for_five(idle_server, image_server):
    srv = idle_server
    key = account_key(srv, "rw-race", credits=5 * COST)
    client = sdk(srv, key, max_retries=0)
    native_body = {
        "service": "runway-i2v",
        "prompt": "",
        "imageUrl": image_server.url("/astronaut-small.jpg"),
        "version": "gen-3",
        "duration": 5,
    }
    with srv.client(key, limits=httpx.Limits(max_connections=10)) as native:

        def create(i: int) -> tuple[str, str | None]:
            if i % 2:
                r = native.post("/v1/image_to_video", json=native_body)
                if r.status_code == 202:
                    return "accepted", r.json()["data"]["imagevideo"]["id"]
                assert r.status_code == 402, r.text
                return "refused", None
            try:
                return "accepted", client.image_to_video.create(prompt_image=PHOTO, **BODY).id
            except runwayml.BadRequestError as exc:
                assert "Insufficient credits" in exc.body["error"]
                return "refused", None

        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(create, range(10)))
        accepted = [gen_id for outcome, gen_id in results if outcome == "accepted"]
        assert len(accepted) == 5, results
        entries = api.ledger(native)
        balance = api.account(native)["creditBalance"]
        assert balance == 0 == client.organization.retrieve().credit_balance
        assert sum(e["amount"] for e in entries) == balance
        charges = sorted(e["generationId"] for e in entries if e["kind"] == "charge")
        assert charges == sorted(accepted)
    for gen_id in accepted:
        client.tasks.delete(gen_id)


def test_node_test_dependency_is_pinned():
    package = json.loads((NODE_DIR / "package.json").read_text())
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    assert package["dependencies"] == {"@runwayml/sdk": "4.20.1"}
    assert lock["packages"]["node_modules/@runwayml/sdk"]["version"] == "4.20.1"
    assert runwayml.__version__ == "5.24.0"
    assert Path(ROOT / "Makefile").read_text().count("npm ci --prefix tests/node") == 1
