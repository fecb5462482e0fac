"""The `runway` provider against a fake Runway API over real HTTP on 127.0.0.2, in process.

Each test scripts the upstream, runs `RunwayProvider.render` the way a worker does (progress,
cancel checks, checkpoints), and checks the outcome, the exact upstream requests, and that the
fake saw no breach of Runway's contract. No log line may carry the key, the prompt, the image
or a signed output URL (checked after every test).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import itertools
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from stillmotion import net
from stillmotion.providers.base import Cancelled, ProviderError, RenderJob, RenderOutput
from stillmotion.providers.runway import ProviderRetry, RunwayProvider, Stage
from stillmotion.services import catalogue
from tests.support.fake_runway import (
    PENDING,
    THROTTLED,
    FakeRunway,
    failed,
    running,
    succeeded,
)
from tests.support.servers import TEST_HOST, free_port, photo_bytes

INTERVAL = 0.05
KEY = "key_" + "5e" * 64
PROMPT = "a lighthouse at dusk, waves xyzzy-private-prompt"
SOURCE = photo_bytes("astronaut", size=256)


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog) -> Iterator[None]:
    caplog.set_level(logging.DEBUG, logger="stillmotion")
    yield
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        line = record.getMessage() + (record.exc_text or "")
        for secret in (KEY, PROMPT, "base64", "_jwt", base64.b64encode(SOURCE[:300]).decode()):
            assert secret not in line, f"log line holds {secret[:20]!r}: {line}"


@pytest.fixture
def fake() -> Iterator[FakeRunway]:
    server = FakeRunway(api_key=KEY, min_poll_interval=INTERVAL)
    yield server
    server.close()


def settings(fake: FakeRunway, **changes: Any) -> catalogue.RunwaySettings:
    base = catalogue.RunwaySettings(
        model="gen4_turbo",
        models={"gen-2": "gen4_turbo", "gen-3": "gen4_turbo", "gen-4": "gen4_turbo"},
        base_url=fake.base_url,
        api_key=KEY,
        poll_interval=INTERVAL,
        deadline_seconds=5.0,
        request_timeout=5.0,
        output_networks=net.parse_networks(f"{TEST_HOST}/32"),
        download_timeout=10.0,
    )
    return dataclasses.replace(base, **changes)


def provider(fake: FakeRunway, **changes: Any) -> RunwayProvider:
    return RunwayProvider(settings(fake, **changes), service_id="runway-i2v")


def job(**options: Any) -> RenderJob:
    values = {
        "version": "gen-3",
        "aspect_ratio": "16:9",
        "duration": 5,
        "prompt": PROMPT,
        "seed": 42,
        "motion_intensity": "medium",
        **options,
    }
    source = values.pop("source", SOURCE)
    return RenderJob(generation_id="gen_01runway", source=source, options=values)


class Worker:
    """What the worker gives `render`: progress and checkpoints recorded, a cancel flag that
    goes up once a stage has been reported (`cancel_at`)."""

    def __init__(self, fake: FakeRunway, tmp_path: Path, *, cancel_at: str | None = None):
        self.fake = fake
        self.workdir = tmp_path
        self.cancel_at = cancel_at
        self.progress: list[tuple[float, str]] = []
        self.checkpoints: list[tuple[dict[str, Any], int]] = []
        """Each state saved, with the number of polls the fake had seen then."""

    @property
    def state(self) -> dict[str, Any]:
        return self.checkpoints[-1][0] if self.checkpoints else {}

    def render(
        self, p: RunwayProvider, j: RenderJob, state: Mapping[str, Any] | None = None
    ) -> RenderOutput:
        return p.render(
            j,
            workdir=self.workdir,
            on_progress=lambda f, stage: self.progress.append((f, stage)),
            should_cancel=lambda: any(s == self.cancel_at for _, s in self.progress),
            state=self.state if state is None else state,
            checkpoint=lambda s: self.checkpoints.append((dict(s), self.fake.count("get"))),
        )


def poll_gaps(fake: FakeRunway) -> list[float]:
    times = [r.at for r in fake.requests if r.route in ("create", "get")]
    return [b - a for a, b in itertools.pairwise(times)]


def check_video(out: RenderOutput, *, width: int, height: int, frames: int) -> None:
    assert (out.width, out.height, out.fps, out.frames) == (width, height, 24, frames)
    assert out.bytes == out.video_path.stat().st_size > 0
    with av.open(str(out.video_path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == frames
    assert out.poster_path is not None
    with Image.open(out.poster_path) as poster:
        assert poster.format == "JPEG" and poster.size == (width, height)


# --- the whole path -------------------------------------------------------------------------


def test_a_completed_5s_job_one_create_paced_polls_one_download(fake, tmp_path):
    """Built from the catalogue as the server will build it; PENDING → THROTTLED → RUNNING →
    SUCCEEDED."""
    toml = tmp_path / "services.toml"
    toml.write_text(
        f'[services.runway-i2v]\nprovider = "runway"\nmodel = "gen4_turbo"\n'
        f'base_url = "{fake.base_url}"\napi_key_env = "RUNWAY_TEST_KEY"\n'
        f'poll_interval = {INTERVAL}\noutput_networks = ["{TEST_HOST}/32"]\n'
    )
    spec = catalogue.load(toml, environ={"RUNWAY_TEST_KEY": KEY}).get("runway-i2v")
    assert spec is not None
    p = RunwayProvider.from_spec(spec)
    fake.script(PENDING, THROTTLED, running(0.3), running(0.8), succeeded())
    worker = Worker(fake, tmp_path)

    out = worker.render(p, job())

    check_video(out, width=128, height=72, frames=120)
    assert fake.counts() == {"create": 1, "get": 5, "output": 1}
    assert fake.violations == []
    (task_id,) = fake.tasks
    assert worker.checkpoints == [({"task_id": task_id}, 0)]  # saved before the first poll
    assert all(r.path == f"/v1/tasks/{task_id}" for r in fake.of("get"))
    assert min(poll_gaps(fake)) >= INTERVAL
    assert max(poll_gaps(fake)) < INTERVAL * 1.5 + 0.1  # paced by the interval, not slower
    assert [stage for _, stage in worker.progress] == [
        Stage.QUEUED_UPSTREAM,
        Stage.THROTTLED_UPSTREAM,
        Stage.RENDERING,
        Stage.RENDERING,
        Stage.DOWNLOADING,
    ]
    fractions = [f for f, _ in worker.progress]
    assert fractions == sorted(fractions) and 0.2 < fractions[2] < fractions[3] < 0.9
    body = fake.of("create")[0].json
    assert body == {
        "model": "gen4_turbo",
        "promptImage": "data:image/jpeg;base64," + base64.b64encode(SOURCE).decode(),
        "ratio": "1280:720",
        "duration": 5,
        "promptText": PROMPT,
        "seed": 42,
    }
    assert out.extra["upstream"] == {"service": "runway-i2v", "task_id": task_id}
    assert "authorization" not in fake.of("output")[0].headers


@pytest.mark.parametrize(
    ("aspect", "ratio", "size"),
    [("9:16", "720:1280", (72, 128)), ("1:1", "960:960", (96, 96))],
)
def test_aspect_ratios_go_in_runway_pixels_and_unset_options_are_left_out(
    fake, tmp_path, aspect, ratio, size
):
    out = Worker(fake, tmp_path).render(
        provider(fake), job(aspect_ratio=aspect, duration=2, prompt="", seed=None)
    )
    check_video(out, width=size[0], height=size[1], frames=48)
    body = fake.of("create")[0].json
    assert body["ratio"] == ratio and body["duration"] == 2
    assert "promptText" not in body and "seed" not in body
    assert fake.counts() == {"create": 1, "get": 1, "output": 1}
    assert fake.violations == []


def test_a_version_maps_to_its_model_and_a_base_url_keeps_its_path(tmp_path):
    fake = FakeRunway(api_key=KEY, min_poll_interval=INTERVAL, prefix="/runway")
    try:
        p = provider(fake, models={"gen-4": "gen4.5"})
        Worker(fake, tmp_path).render(p, job(version="gen-4"))
        assert fake.of("create")[0].path == "/runway/v1/image_to_video"
        assert fake.of("create")[0].json["model"] == "gen4.5"
        assert fake.counts() == {"create": 1, "get": 1, "output": 1}
        assert fake.violations == []
    finally:
        fake.close()


def test_a_source_over_5_mb_is_sent_as_a_jpeg_that_fits(fake, tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    assert len(buf.getvalue()) > 5_000_000
    Worker(fake, tmp_path).render(provider(fake), job(source=buf.getvalue()))
    uri = fake.of("create")[0].json["promptImage"]
    assert uri.startswith("data:image/jpeg;base64,") and len(uri) <= 5_000_000
    assert fake.violations == []  # the fake decoded it as the JPEG it claims to be


# --- upstream failures ----------------------------------------------------------------------


def test_safety_failure_is_content_moderation_with_upstream_text_and_no_retry(fake, tmp_path):
    text = "The input image was flagged by content moderation."
    fake.script(PENDING, failed("SAFETY.INPUT.IMAGE", text))
    worker = Worker(fake, tmp_path)
    with pytest.raises(ProviderError) as info:
        worker.render(provider(fake), job())
    assert info.value.code == "CONTENT_MODERATION" and str(info.value) == text
    assert fake.counts() == {"create": 1, "get": 2}
    assert fake.violations == []


def test_internal_failure_is_retried_with_a_new_task_on_the_next_attempt(fake, tmp_path):
    fake.script(running(0.5), failed("INTERNAL.BAD_OUTPUT.CODE01", "Output rejected."))
    fake.script(PENDING, succeeded())
    worker = Worker(fake, tmp_path)
    p = provider(fake)
    with pytest.raises(ProviderRetry, match="Output rejected"):
        worker.render(p, job())
    first = next(iter(fake.tasks))
    assert worker.state == {"failed_task_id": first}  # known failed: the id is let go
    out = worker.render(p, job())  # the worker's next attempt, with what was checkpointed

    check_video(out, width=128, height=72, frames=120)
    assert fake.counts() == {"create": 2, "get": 4, "output": 1}
    second = list(fake.tasks)[1]
    assert [s for s, _ in worker.checkpoints] == [
        {"task_id": first},
        {"failed_task_id": first},
        {"task_id": second},
    ]
    assert fake.violations == []


def test_429_with_retry_after_is_honoured(fake, tmp_path):
    fake.answer("create", 429, {"error": "Too many requests"}, headers={"Retry-After": "1"})
    out = Worker(fake, tmp_path).render(provider(fake), job())
    assert out.frames == 120
    creates = fake.of("create")
    assert [r.status for r in creates] == [429, 200]
    assert creates[1].at - creates[0].at >= 1.0
    assert len(fake.tasks) == 1
    assert fake.counts() == {"create": 2, "get": 1, "output": 1}
    assert fake.violations == []


def test_503_twice_on_a_poll_is_backed_off_and_the_job_completes(fake, tmp_path):
    fake.script(PENDING, running(0.5), succeeded())
    fake.answer("get", 503, times=2)
    worker = Worker(fake, tmp_path)
    out = worker.render(provider(fake), job())
    assert out.frames == 120
    assert [r.status for r in fake.of("get")] == [503, 503, 200, 200, 200]
    assert min(poll_gaps(fake)) >= INTERVAL  # backed off, never faster than the pace
    assert fake.counts() == {"create": 1, "get": 5, "output": 1}
    assert fake.violations == []


def test_upstream_trouble_past_the_deadline_ends_the_attempt(fake, tmp_path):
    fake.answer("create", 503, times=100)
    started = time.monotonic()
    with pytest.raises(ProviderRetry, match="HTTP 503"):
        Worker(fake, tmp_path).render(provider(fake, deadline_seconds=0.6), job())
    assert time.monotonic() - started < 0.6 + 0.5
    assert fake.tasks == {} and 2 <= fake.count("create") < 100
    assert fake.violations == []


def test_an_unreachable_upstream_is_backed_off_then_retried_later(tmp_path):
    dead = f"http://{TEST_HOST}:{free_port()}"
    fake = FakeRunway(api_key=KEY)
    fake.close()
    p = RunwayProvider(
        dataclasses.replace(settings(fake), base_url=dead, deadline_seconds=0.4),
        service_id="runway-i2v",
    )
    with pytest.raises(ProviderRetry, match="not reachable"):
        Worker(fake, tmp_path).render(p, job())


def test_401_fails_unavailable_and_marks_the_service_unavailable_for_a_while(tmp_path):
    fake = FakeRunway(api_key="key_the_real_one", min_poll_interval=INTERVAL)
    try:
        p = provider(fake, unavailable_seconds=0.5)
        assert p.availability() == (True, None)
        with pytest.raises(ProviderError) as info:
            Worker(fake, tmp_path).render(p, job())
        assert info.value.code == "PROVIDER_UNAVAILABLE"
        available, reason = p.availability()
        assert not available and reason and "HTTP 401" in reason
        with pytest.raises(ProviderError):  # refused without asking upstream again
            Worker(fake, tmp_path).render(p, job())
        assert fake.counts() == {"create": 1}
        assert p.counters()["refusals"] == 1
        time.sleep(0.55)
        assert p.availability() == (True, None)
        assert fake.violations == []  # a wrong key is a scenario, not a contract breach
    finally:
        fake.close()


def test_403_model_variant_not_available(fake, tmp_path):
    message = "Model variant gen4_turbo is not available"
    fake.answer("create", 403, {"error": message})
    p = provider(fake)
    with pytest.raises(ProviderError) as info:
        Worker(fake, tmp_path).render(p, job())
    assert info.value.code == "PROVIDER_UNAVAILABLE" and message in str(info.value)
    available, reason = p.availability()
    assert not available and reason and message in reason
    assert fake.counts() == {"create": 1} and fake.violations == []


def test_an_output_url_answering_404_fails_the_job(fake, tmp_path):
    fake.script(succeeded("missing"))
    with pytest.raises(ProviderError) as info:
        Worker(fake, tmp_path).render(provider(fake), job())
    assert info.value.code == "PROVIDER_ERROR" and "HTTP 404" in str(info.value)
    assert fake.counts() == {"create": 1, "get": 1, "output": 1}
    assert fake.violations == []


def test_an_output_that_is_not_a_video_fails_the_job(fake, tmp_path):
    fake.script(succeeded("not_video"))
    with pytest.raises(ProviderError) as info:
        Worker(fake, tmp_path).render(provider(fake), job())
    assert info.value.code == "PROVIDER_ERROR" and "not an MP4 video" in str(info.value)
    assert fake.counts() == {"create": 1, "get": 1, "output": 1}
    assert fake.violations == []


def test_a_failed_download_is_tried_again_with_a_fresh_url(fake, tmp_path):
    fake.answer("output", 503)
    out = Worker(fake, tmp_path).render(provider(fake), job())
    assert out.frames == 120
    assert [r.status for r in fake.of("output")] == [503, 200]
    assert fake.counts() == {"create": 1, "get": 2, "output": 2}
    assert fake.violations == []


@pytest.mark.parametrize(
    "changes",
    [{"allowed_output_hosts": ("*.cloudfront.net",)}, {"output_networks": ()}],
    ids=["host not listed", "network not allowed"],
)
def test_the_output_goes_only_where_the_operator_allows(fake, tmp_path, changes):
    with pytest.raises(ProviderError, match="may not reach"):
        Worker(fake, tmp_path).render(provider(fake, **changes), job())
    assert fake.counts() == {"create": 1, "get": 1}
    assert fake.violations == []


# --- resume and cancel ----------------------------------------------------------------------


def test_a_second_attempt_resumes_the_checkpointed_task_without_creating(fake, tmp_path):
    fake.script(PENDING, running(0.4), running(0.6), succeeded())
    dying = Worker(fake, tmp_path, cancel_at=Stage.RENDERING)  # stops mid-render, hands back
    p = provider(fake)
    with pytest.raises(Cancelled):
        dying.render(p, job())
    (task_id,) = fake.tasks
    assert dying.state == {"task_id": task_id}

    again = Worker(fake, tmp_path)
    out = RunwayProvider(settings(fake), service_id="runway-i2v").render(  # another process
        job(),
        workdir=tmp_path,
        on_progress=lambda f, s: again.progress.append((f, s)),
        should_cancel=lambda: False,
        state=dying.state,
        checkpoint=lambda s: again.checkpoints.append((s, 0)),
    )
    check_video(out, width=128, height=72, frames=120)
    assert fake.counts() == {"create": 1, "get": 4, "output": 1}  # no DELETE, no second task
    assert {r.path for r in fake.of("get")} == {f"/v1/tasks/{task_id}"}
    assert again.checkpoints == []
    assert fake.violations == []


def test_cancel_while_running_sends_exactly_one_delete(fake, tmp_path):
    fake.script(PENDING, running(0.2), running(0.5), succeeded())
    worker = Worker(fake, tmp_path, cancel_at=Stage.RENDERING)
    p = provider(fake)
    with pytest.raises(Cancelled):
        worker.render(p, job())
    polls = fake.count("get")
    p.cancel(worker.state)
    (task_id,) = fake.tasks
    assert [(r.method, r.path, r.status) for r in fake.of("delete")] == [
        ("DELETE", f"/v1/tasks/{task_id}", 204)
    ]
    time.sleep(INTERVAL * 3)
    assert fake.counts() == {"create": 1, "get": polls, "delete": 1}
    assert fake.tasks[task_id].cancelled
    assert fake.violations == []


def test_cancel_is_best_effort_and_never_raises(fake, tmp_path):
    p = provider(fake)
    p.cancel({})  # nothing upstream yet: nothing sent
    assert fake.count("delete") == 0
    fake.answer("delete", 500)
    p.cancel({"task_id": "00000000-0000-0000-0000-000000000000"})
    assert fake.count("delete") == 1
    fake.close()
    p.cancel({"task_id": "00000000-0000-0000-0000-000000000000"})  # upstream down: logged


def test_cancelled_before_the_create_sends_nothing(fake, tmp_path):
    p = provider(fake)
    with pytest.raises(Cancelled):
        p.render(job(), workdir=tmp_path, on_progress=lambda f, s: None, should_cancel=lambda: True)
    assert fake.requests == []


def test_no_key_is_unavailable(fake):
    p = provider(fake, api_key="")
    assert p.availability() == (False, "RUNWAYML_API_SECRET is not set")
