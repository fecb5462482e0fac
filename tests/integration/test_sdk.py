"""The SDK against a real running server over loopback HTTP.

Test doubles here stand only for what is outside our control: a network that loses a response
(a proxy that forwards the request, then drops the connection) and a server that answers 429
(a small loopback server speaking API.md §6/§8's contract).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from stillmotion.client import (
    AsyncClient,
    Client,
    Generation,
    GenerationCancelled,
    GenerationFailed,
)

FAST = {"duration": 2, "version": "gen-2"}


# --- test doubles ---------------------------------------------------------------------------
@dataclass
class Seen:
    at: float
    method: str
    path: str
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)


class Proxy:
    """A loopback HTTP proxy to `upstream` that records every request.

    `drop(method, path)` returning True makes it forward the request and then close the
    connection without answering: the server did the work, the client never hears of it.
    `read_budget=(n, seconds)` makes it enforce a stricter read limit than the server's, in
    fixed windows, rewriting the X-RateLimit headers and answering 429 past it.
    """

    def __init__(
        self,
        upstream: str,
        *,
        drop: Callable[[str, str], bool] | None = None,
        read_budget: tuple[int, float] | None = None,
    ) -> None:
        self.upstream = upstream
        self.drop = drop or (lambda method, path: False)
        self.read_budget = read_budget
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.window_start: float | None = None
        self.window_reads = 0
        self.http = httpx.Client(base_url=upstream, timeout=60)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.http.close()

    def _over_budget(self) -> tuple[bool, dict[str, str]]:
        assert self.read_budget is not None
        limit, window = self.read_budget
        now = time.time()
        with self.lock:
            if self.window_start is None or now >= self.window_start + window:
                self.window_start, self.window_reads = now, 0
            self.window_reads += 1
            remaining = limit - self.window_reads
            reset = self.window_start + window
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": str(int(reset) + 1),
        }
        if remaining < 0:
            headers["Retry-After"] = str(max(1, int(reset - now) + 1))
        return remaining < 0, headers

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        method, path = h.command, h.path
        is_read = method == "GET" and path.startswith("/v1/")
        override: dict[str, str] = {}
        if self.read_budget is not None and is_read:
            over, override = self._over_budget()
            if over:
                payload = json.dumps(
                    {
                        "errors": [
                            {
                                "message": "slow down",
                                "extensions": {
                                    "code": "RATE_LIMITED",
                                    "retryAfter": int(override["Retry-After"]),
                                },
                            }
                        ]
                    }
                )
                self._record(method, path, 429, override)
                self._reply(h, 429, override, payload.encode())
                return
        skip = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}
        headers = {k: v for k, v in h.headers.items() if k.lower() not in skip}
        response = self.http.request(method, path, headers=headers, content=body)
        answer = {
            k: v
            for k, v in response.headers.items()
            if k.lower()
            not in ("content-length", "connection", "transfer-encoding", "content-encoding")
        }
        if override:
            answer = {
                k: v
                for k, v in answer.items()
                if not k.lower().startswith(("x-ratelimit-", "ratelimit"))
            }
        answer.update(override)
        self._record(method, path, response.status_code, answer)
        if self.drop(method, path):
            self._record(method, path, None, {})
            h.close_connection = True
            h.connection.shutdown(2)
            return
        self._reply(h, response.status_code, answer, response.content)

    def _record(self, method: str, path: str, status: int | None, headers: dict[str, str]):
        with self.lock:
            lowered = {k.lower(): v for k, v in headers.items()}
            self.seen.append(Seen(time.time(), method, path, status, lowered))

    @staticmethod
    def _reply(
        h: http.server.BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


@contextmanager
def answers_429_once(retry_after: str) -> Iterator[tuple[str, list[tuple[float, dict]]]]:
    """A loopback server that answers the first create with 429 + Retry-After, then 202."""
    hits: list[tuple[float, dict[str, str]]] = []
    generation = {
        "id": "gen_test429",
        "status": "processing",
        "stage": "queued",
        "progress": 0.0,
        "creditCost": 4,
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hits.append((time.monotonic(), dict(self.headers)))
            if len(hits) == 1:
                status, headers = 429, {"Retry-After": retry_after}
                body = {
                    "errors": [
                        {
                            "message": "Rate limit exceeded",
                            "extensions": {"code": "RATE_LIMITED", "retryAfter": int(retry_after)},
                        }
                    ]
                }
            else:
                status, headers, body = 202, {}, {"data": {"imagevideo": generation}}
            raw = json.dumps(body).encode()
            self.send_response(status)
            for k, v in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


# --- tests without the server ------------------------------------------------------------------
def test_client_imports_with_only_httpx():
    blocker = """
import importlib.abc, sys
BLOCKED = {"fastapi", "sqlalchemy", "numpy", "PIL", "cv2", "av", "pydantic", "strawberry",
           "starlette", "uvicorn", "alembic", "typer", "rich"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Block())
import stillmotion.client as c
from stillmotion.client import Client, AsyncClient, Generation, errors, models
c.Client(base_url="http://127.0.0.1:1", api_key="sm_x").close()
print("ok", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""
    out = subprocess.run(
        [sys.executable, "-c", blocker], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok []"


@pytest.mark.parametrize("use_async", [False, True])
def test_429_retry_after_2_waits_two_seconds(use_async):
    with answers_429_once("2") as (url, hits):
        if use_async:

            async def go() -> Generation:
                async with AsyncClient(base_url=url, api_key="sm_test") as client:
                    return await client.generate(image_url="https://example.com/a.jpg", **FAST)

            gen = asyncio.run(go())
        else:
            with Client(base_url=url, api_key="sm_test") as client:
                gen = client.generate(image_url="https://example.com/a.jpg", **FAST)
    assert gen.id == "gen_test429"
    assert len(hits) == 2
    gap = hits[1][0] - hits[0][0]
    assert 2.0 <= gap < 3.5, gap
    keys = {h.get("Idempotency-Key") for _, h in hits}
    assert len(keys) == 1 and None not in keys


def test_retry_after_beyond_the_budget_raises_at_once():
    from stillmotion.client import RateLimited

    with (
        answers_429_once("30") as (url, hits),
        Client(base_url=url, api_key="sm_test", max_retry_wait=10) as client,
    ):
        start = time.monotonic()
        with pytest.raises(RateLimited) as info:
            client.generate(image_url="https://example.com/a.jpg", **FAST)
    assert time.monotonic() - start < 1.0
    assert info.value.retry_after == 30 and len(hits) == 1


# --- against the real server ---------------------------------------------------------------------
@pytest.fixture
def make_key(server):
    def make(*, plan: str = "pro", credits: int = 100_000) -> str:
        return server.create_key(f"sdk-{uuid.uuid4().hex[:10]}", plan=plan, credits=credits)

    return make


@pytest.fixture
def client(server, make_key):
    with Client(base_url=server.url, api_key=make_key()) as c:
        yield c


@pytest.mark.parametrize("transport", ["rest", "graphql"])
def test_lost_create_response_is_retried_into_one_job_and_one_charge(
    server, make_key, image_url, transport
):
    key = make_key(credits=1000)
    create_path = "/v1/image_to_video" if transport == "rest" else "/graphql"
    dropped: list[str] = []

    def drop(method: str, path: str) -> bool:
        if method == "POST" and path == create_path and not dropped:
            dropped.append(path)
            return True
        return False

    with (
        Proxy(server.url, drop=drop) as proxy,
        Client(base_url=proxy.url, api_key=key, transport=transport) as client,
    ):
        gen = client.generate(image_url=image_url, prompt="slow push in", **FAST)
        creates = [s for s in proxy.seen if s.method == "POST" and s.path == create_path]
    # The server answered twice (the first answer was lost), the second time as a replay.
    answered = [s for s in creates if s.status is not None]
    assert [s.status for s in answered] == ([202, 202] if transport == "rest" else [200, 200])
    with Client(base_url=server.url, api_key=key) as direct:
        jobs = list(direct.list())
        assert [j.id for j in jobs] == [gen.id]
        assert direct.account().credit_balance == 1000 - gen.credit_cost == 1000 - 4
        charges = [e for e in direct.ledger() if e.kind == "charge"]
        assert [(e.generation_id, e.amount) for e in charges] == [(gen.id, -4)]
    assert answered[1].headers.get("idempotent-replayed") == "true"


def test_wait_returns_on_completion_and_download_streams_the_mp4(client, image_url, tmp_path):
    gen = client.generate(image_url=image_url, **FAST)
    seen: list[Generation] = []
    done = client.wait(gen, timeout=180, on_progress=seen.append)
    assert done.status == "completed" and done.stage == "done" and done.progress == 1.0
    assert done.url and done.url.endswith(".mp4")
    progress = [g.progress for g in seen]
    assert progress == sorted(progress) and seen[-1].status == "completed"
    assert done.metadata is not None and (done.metadata.width, done.metadata.height) == (1280, 720)
    out = client.download(done, tmp_path / "clip.mp4")
    data = out.read_bytes()
    assert data[4:8] == b"ftyp" and len(data) == done.metadata.bytes


def test_wait_raises_on_cancellation_and_credits_come_back(server, make_key, image_url):
    key = make_key(credits=1000)
    with Client(base_url=server.url, api_key=key) as client:
        gen = client.generate(image_url=image_url, duration=10, version="gen-3")
        assert client.account().credit_balance == 1000 - gen.credit_cost
        cancelled: list[Generation] = []

        def cancel() -> None:
            with Client(base_url=server.url, api_key=key) as other:
                cancelled.append(other.cancel(gen))

        canceller = threading.Timer(0.5, cancel)
        canceller.start()
        try:
            with pytest.raises(GenerationCancelled) as info:
                client.wait(gen, timeout=120)
        finally:
            canceller.join()
        assert cancelled and cancelled[0].status == "cancelled"
        assert info.value.generation.id == gen.id
        assert info.value.generation.status == "cancelled"
        assert client.account().credit_balance == 1000
        # A second cancel of a cancelled job (a retried DELETE) is not an error.
        assert client.cancel(gen).status == "cancelled"


def test_wait_keeps_within_the_read_limit(server, make_key, image_url):
    """A proxy enforces a read budget far tighter than the server's (2 reads per 4 s) and
    answers 429 past it; waiting on a real job must never hit it, even when asked to poll
    every 0.2 s."""
    key = make_key()
    with (
        Proxy(server.url, read_budget=(2, 4.0)) as proxy,
        Client(base_url=proxy.url, api_key=key, poll_interval=0.2) as client,
    ):
        gen = client.generate(image_url=image_url, duration=4, version="gen-3")
        done = client.wait(gen, timeout=180)
        assert done.status == "completed"
    reads = [s for s in proxy.seen if s.method == "GET"]
    assert len(reads) >= 2 and all(s.status == 200 for s in reads)
    # And against the server's own announced limit, per minute:
    limit = int(reads[0].headers["x-ratelimit-limit"])
    for s in reads:
        assert len([r for r in reads if s.at <= r.at < s.at + 60]) <= limit


def _raw(server, key: str, method: str, path: str, **kw: Any) -> dict[str, Any]:
    with server.client(key) as http:
        response = http.request(method, path, **kw)
    assert response.status_code < 300, response.text
    return response.json()


def test_models_round_trip_every_field_of_rest_responses(server, make_key, image_url, image_path):
    key = make_key()
    with Client(base_url=server.url, api_key=key) as client:
        upload = client.upload(image_path)
        assert upload.uri == f"upload://{upload.id}" and upload.unknown() == {}
        gen = client.wait(client.generate(image=upload.uri, seed=7, **FAST), timeout=180)
        account = client.account()
    raw_gen = _raw(server, key, "GET", f"/v1/image_to_video/{gen.id}")["data"]["imagevideo"]
    raw_acct = _raw(server, key, "GET", "/v1/account")["data"]["account"]
    for model, raw in ((gen, raw_gen), (account, raw_acct)):
        assert model.unknown() == {}, f"fields the SDK does not know: {model.unknown()}"
        again = type(model).from_dict(raw)
        assert again.to_dict() == raw
        assert again == model
    assert gen.metadata.unknown() == {}
    assert gen.metadata.seed == 7 and gen.credit_cost == 4 and gen.poster_url


def test_models_round_trip_every_field_of_graphql_responses(server, make_key, image_url):
    from stillmotion.client._ops import ACCOUNT_FIELDS, GENERATION_FIELDS

    key = make_key()
    with Client(base_url=server.url, api_key=key, transport="graphql") as client:
        created = client.generate(image_url=image_url, prompt="orbit left", **FAST)
        animated = client.animate_image(image_url=image_url, loop=True, **FAST)
        done = client.wait(created, timeout=180)
        account = client.account()
        listed = {g.id: g for g in client.list()}
    assert set(listed) == {created.id, animated.id}
    query = (
        f'{{ generation(id: "{done.id}") {{ {GENERATION_FIELDS} }} '
        f"account {{ {ACCOUNT_FIELDS} }} }}"
    )
    data = _raw(server, key, "POST", "/graphql", json={"query": query})["data"]
    assert Generation.from_dict(data["generation"]).to_dict() == data["generation"]
    assert Generation.from_dict(data["generation"]) == done
    assert type(account).from_dict(data["account"]).to_dict() == data["account"]
    # Every field of the schema's Generation and Account types is one the SDK knows.
    # (Relations with arguments, such as Account.ledger, are fetched on their own.)
    for model in (Generation, type(account)):
        query = f'{{ __type(name: "{model.__name__}") {{ fields {{ name args {{ name }} }} }} }}'
        schema = _raw(server, key, "POST", "/graphql", json={"query": query})
        fields = {f["name"] for f in schema["data"]["__type"]["fields"] if not f["args"]}
        assert fields == model.known_keys()
    assert done.prompt == "orbit left" and done.type == "VIDEO"
    assert animated.metadata.version == "gen-2"


def test_errors_come_back_typed(server, make_key, image_url):
    from stillmotion.client import (
        InsufficientCredits,
        NotFound,
        Unauthenticated,
        ValidationError,
    )

    for transport in ("rest", "graphql"):
        with Client(base_url=server.url, api_key="sm_" + "x" * 40, transport=transport) as bad:
            with pytest.raises(Unauthenticated) as info:
                bad.account()
            assert info.value.status == 401
        with Client(base_url=server.url, api_key=make_key(credits=3), transport=transport) as c:
            with pytest.raises(NotFound):
                c.get("gen_doesnotexist")
            with pytest.raises(ValidationError) as invalid:
                c.generate(image_url=image_url, duration=11)
            assert invalid.value.field == "duration"
            with pytest.raises(InsufficientCredits) as poor:
                c.generate(image_url=image_url, **FAST)
            assert (poor.value.required, poor.value.available) == (4, 3)
            with pytest.raises(InsufficientCredits) as early:
                c.ensure_credits(10)
            assert (early.value.required, early.value.available) == (10, 3)
            assert c.ensure_credits(3).credit_balance == 3


@pytest.mark.parametrize("transport", ["rest", "graphql"])
def test_list_iterates_pages_and_filters(server, make_key, image_url, transport):
    with Client(base_url=server.url, api_key=make_key(), transport=transport) as client:
        made = [client.generate(image_url=image_url, **FAST) for _ in range(3)]
        client.cancel(made[1])
        listed = list(client.list(limit=2))
        assert [g.id for g in listed] == [g.id for g in reversed(made)]
        assert [g.id for g in client.list(status="cancelled", limit=1)] == [made[1].id]


def test_batch_keeps_within_concurrency_and_credits(server, make_key, image_url, image_path):
    # free plan: one job at a time; credits for two 2-second gen-2 clips (4 each) and a bit.
    key = make_key(plan="free", credits=9)
    with Client(base_url=server.url, api_key=key) as client:
        missing = image_path.parent / "missing.jpg"
        result = client.batch([image_url, missing, image_path, image_url], wait=True, **FAST)
    assert [g.status for g in result.submitted] == ["completed", "completed"]
    assert [(s.image, s.reason.split(":")[0]) for s in result.skipped] == [
        (missing, "unreadable image"),
        (image_url, "insufficient credits"),
    ]
    first, second = result.submitted
    # The second was submitted only after the first had finished.
    assert second.created_at >= first.completed_at


def test_async_client_generates_waits_and_downloads(server, make_key, image_path, tmp_path):
    async def go() -> tuple[Generation, list[float]]:
        seen: list[float] = []

        async def on_progress(g: Generation) -> None:
            seen.append(g.progress)

        async with AsyncClient(base_url=server.url, api_key=make_key()) as client:
            gen = await client.generate(image=image_path, **FAST)
            done = await client.wait(gen, timeout=180, on_progress=on_progress)
            await client.download(done, tmp_path / "a.mp4")
            return done, seen

    done, seen = asyncio.run(go())
    assert done.status == "completed" and seen[-1] == 1.0
    assert (tmp_path / "a.mp4").read_bytes()[4:8] == b"ftyp"


def test_wait_raises_on_failure_with_the_code_and_the_refund(make_server, image_url):
    """A server whose renders may take 0.2 s at most: a 10-second gen-3 clip fails TIMEOUT."""
    srv = make_server("sqlite", env={"STILLMOTION_RENDER_TIMEOUT_SECONDS": "0.2"}).start()
    key = srv.create_key("failing", credits=100)
    with Client(base_url=srv.url, api_key=key) as client:
        gen = client.generate(image_url=image_url, duration=10, version="gen-3")
        with pytest.raises(GenerationFailed) as info:
            client.wait(gen, timeout=120)
        assert info.value.code == "TIMEOUT"
        assert info.value.generation.id == gen.id and info.value.generation.status == "failed"
        assert info.value.generation.error.code == "TIMEOUT"
        assert client.account().credit_balance == 100


@pytest.mark.parametrize("local_images", ["upload", "data_uri"])
def test_local_images_are_uploaded_or_inlined(server, make_key, image_path, local_images):
    with (
        Proxy(server.url) as proxy,
        Client(base_url=proxy.url, api_key=make_key(), local_images=local_images) as client,
    ):
        from_path = client.generate(image=image_path, **FAST)
        from_bytes = client.generate(image=image_path.read_bytes(), **FAST)
        uploads = [s for s in proxy.seen if s.path == "/v1/uploads"]
        creates = [s for s in proxy.seen if s.path == "/v1/image_to_video"]
    assert from_path.id != from_bytes.id and len(creates) == 2
    assert len(uploads) == (2 if local_images == "upload" else 0)
    assert all(s.status == 201 for s in uploads)


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    """A webhook receiver on the test peers' address (the one the server may call)."""
    from tests.support.servers import TEST_HOST

    received: list[tuple[bytes, dict[str, str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((body, dict(self.headers)))
            self.send_response(204)
            self.end_headers()

    server = http.server.ThreadingHTTPServer((TEST_HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{TEST_HOST}:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_deliveries_ledger_and_signatures(server, make_key, image_url):
    from stillmotion.client import webhooks

    key = make_key(credits=100)
    with (
        webhook_receiver() as (hook_url, received),
        Client(base_url=server.url, api_key=key) as client,
    ):
        gen = client.wait(client.generate(image_url=image_url, webhook_url=hook_url, **FAST))
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        secret = client.webhook_secret()
        deliveries = client.deliveries(gen)
        ledger = list(client.ledger(limit=1))
    assert received, "no webhook arrived"
    body, headers = received[0]
    event = webhooks.verify(body, headers, secret)
    assert event["id"] == gen.id and event["status"] == "completed" and event["url"] == gen.url
    [delivery] = deliveries
    assert delivery.unknown() == {} and delivery.generation_id == gen.id
    assert delivery.event == "generation.completed" and delivery.state == "delivered"
    assert delivery.attempts and delivery.attempts[-1].status_code == 204
    assert delivery.attempts[-1].unknown() == {}
    # Two pages of one entry each: the charge, then the grant, newest first.
    assert [(e.kind, e.amount, e.balance_after) for e in ledger] == [
        ("charge", -4, 96),
        ("grant", 100, 100),
    ]
    assert ledger[0].generation_id == gen.id and all(e.unknown() == {} for e in ledger)
