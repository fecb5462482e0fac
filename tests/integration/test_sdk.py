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
            self.seen.append(Seen(time.time(), method, path, status, headers))

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
