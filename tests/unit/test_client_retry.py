"""Backoff, Retry-After and polling pace of the SDK, with a fake clock (no network)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from stillmotion.client import errors
from stillmotion.client._ops import Call, Ops, Sleep
from stillmotion.client._retry import ReadPacer, RetryPolicy
from stillmotion.client.models import Generation


def _limited(retry_after: str) -> errors.RateLimited:
    return errors.RateLimited("slow", status=429, headers={"retry-after": retry_after})


def test_full_jitter_grows_exponentially_within_cap():
    policy = RetryPolicy(
        max_retries=10, max_retry_wait=1000, base=0.5, cap=4.0, rng=random.Random(7)
    )
    net = errors.NetworkError("reset")
    for attempt in range(10):
        bound = min(4.0, 0.5 * 2**attempt)
        samples = [policy.delay(attempt=attempt, error=net, waited=0) for _ in range(200)]
        assert all(0 <= s <= bound for s in samples)
        assert max(samples) > bound * 0.8  # the whole range is used: full jitter


def test_retry_after_is_a_floor_and_budget_ends_retries():
    policy = RetryPolicy(max_retries=3, max_retry_wait=10, rng=random.Random(1))
    assert policy.delay(attempt=0, error=_limited("2"), waited=0) == 2.0
    # More than the budget has left: give up rather than sleep less than asked.
    assert policy.delay(attempt=0, error=_limited("11"), waited=0) is None
    assert policy.delay(attempt=1, error=_limited("5"), waited=6) is None
    assert policy.delay(attempt=3, error=errors.ServerError(status=503), waited=0) is None
    for code_error in (errors.IdempotencyInProgress(status=409), errors.ServerError(status=502)):
        assert policy.delay(attempt=0, error=code_error, waited=0) is not None
    for final in (
        errors.BadRequest(status=400),
        errors.AlreadyFinished(status=409),
        errors.InsufficientCredits(status=402),
        errors.NotFound(status=404),
    ):
        assert policy.delay(attempt=0, error=final, waited=0) is None


def test_pacer_reads_x_ratelimit_and_ietf_headers():
    pacer = ReadPacer()
    assert pacer.min_interval(now=1000.0) == 0.0
    pacer.update(
        {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "1700000010"}, now=1700000000.0
    )
    assert pacer.min_interval(now=1700000000.0) == pytest.approx(2.0)
    pacer.update(
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2000000000"}, now=1999999990.0
    )
    assert pacer.min_interval(now=1999999990.0) == pytest.approx(10.0)
    ietf = ReadPacer()
    ietf.update({"RateLimit": '"default";r=3;t=30'}, now=50.0)
    assert ietf.min_interval(now=50.0) == pytest.approx(10.0)
    old = ReadPacer()
    old.update({"RateLimit": "limit=600, remaining=600, reset=60"}, now=0.0)
    assert old.min_interval(now=0.0) == pytest.approx(0.1)


class FakeServer:
    """Drives an operation as the clients do, answering its calls from a script."""

    def __init__(self, answer: Callable[[Call, float], httpx.Response]):
        self.now = 0.0
        self.answer = answer
        self.sleeps: list[float] = []
        self.calls: list[tuple[float, Call]] = []

    def ops(self, **kwargs: Any) -> Ops:
        return Ops(clock=lambda: self.now, wall=lambda: 1_000_000_000 + self.now, **kwargs)

    def run(self, op):
        value, error = None, None
        while True:
            try:
                step = op.throw(error) if error else op.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            if isinstance(step, Sleep):
                self.sleeps.append(step.seconds)
                self.now += step.seconds
            else:
                self.calls.append((self.now, step))
                value = self.answer(step, self.now)


def _gen(status: str = "processing", progress: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"id": "gen_1", "status": status, "progress": progress, "stage": "rendering", **extra}


def _body(gen: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"imagevideo": gen}}


def test_wait_backs_off_from_one_second_to_the_cap_and_reports_progress():
    finish_at = 60.0

    def answer(call: Call, now: float) -> httpx.Response:
        assert call.method == "GET" and call.url == "/v1/image_to_video/gen_1"
        if now >= finish_at:
            return httpx.Response(200, json=_body(_gen("completed", 1.0, url="http://x/a.mp4")))
        return httpx.Response(200, json=_body(_gen(progress=round(now / finish_at, 2))))

    server = FakeServer(answer)
    seen: list[float] = []
    gen = server.run(
        server.ops(max_poll_interval=8.0).wait(
            Generation.from_dict(_gen()),
            timeout=None,
            on_progress=lambda g: seen.append(g.progress),
        )
    )
    assert gen.status == "completed" and gen.url == "http://x/a.mp4"
    assert server.sleeps[:4] == pytest.approx([1.0, 1.5, 2.25, 3.375])
    assert max(server.sleeps) == 8.0
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_wait_paces_polls_to_the_announced_read_budget():
    # The server says: 4 reads left in the next 20 s. Polling must spread them out.
    def answer(call: Call, now: float) -> httpx.Response:
        reset = 1_000_000_000 + 20.0
        remaining = max(0, 5 - sum(1 for t, _ in server.calls if t < 20.0))
        headers = {"X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(reset)}
        status = "completed" if now >= 30.0 else "processing"
        return httpx.Response(200, json=_body(_gen(status)), headers=headers)

    server = FakeServer(answer)
    server.run(server.ops().wait("gen_1", timeout=None, on_progress=None))
    in_window = [t for t, _ in server.calls if t < 20.0]
    assert len(in_window) <= 4 + 1  # the first poll, plus the four announced
    assert server.sleeps[0] >= 20.0 / 4 - 1e-9


@pytest.mark.parametrize(
    ("status", "exc"),
    [("failed", errors.GenerationFailed), ("cancelled", errors.GenerationCancelled)],
)
def test_wait_raises_on_failed_and_cancelled(status, exc):
    final = _gen(
        status, error={"code": "RENDER_FAILED", "message": "x"} if status == "failed" else None
    )
    server = FakeServer(
        lambda call, now: httpx.Response(200, json=_body(final if now > 2 else _gen()))
    )
    with pytest.raises(exc) as info:
        server.run(server.ops().wait("gen_1", timeout=None, on_progress=None))
    assert info.value.generation.status == status
    if status == "failed":
        assert info.value.code == "RENDER_FAILED"


def test_wait_timeout_carries_the_id():
    server = FakeServer(lambda call, now: httpx.Response(200, json=_body(_gen())))
    with pytest.raises(errors.WaitTimeout) as info:
        server.run(server.ops().wait("gen_1", timeout=10, on_progress=None))
    assert info.value.generation_id == "gen_1"
    assert server.now <= 10.0 and sum(server.sleeps) <= 10.0


def test_one_idempotency_key_per_logical_create_reused_on_retries():
    from stillmotion.client import Client

    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        if len(keys) == 2:
            return httpx.Response(
                503,
                json={
                    "errors": [{"message": "busy", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]
                },
            )
        if len(keys) == 3:
            return httpx.Response(
                409,
                json={
                    "errors": [
                        {"message": "wait", "extensions": {"code": "IDEMPOTENCY_IN_PROGRESS"}}
                    ]
                },
            )
        return httpx.Response(202, json=_body(_gen()))

    slept: list[float] = []
    client = Client(
        base_url="http://sm.test",
        api_key="sm_x",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    client._sleep = slept.append
    gen = client.generate(image_url="https://example.com/a.jpg", duration=2, version="gen-2")
    gen2 = client.generate(image_url="https://example.com/a.jpg", duration=2, version="gen-2")
    assert gen.id == gen2.id == "gen_1"
    assert len(set(keys[:4])) == 1 and keys[4] != keys[0]
    assert len(slept) == 3
