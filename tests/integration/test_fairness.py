"""Fairness between polling and creating (issue 10, item 7): a crowd of polling clients must not
lock new work out. A real `stillmotion serve` on SQLite, loaded over loopback by closed-loop
clients on keep-alive connections; the bound is a ratio of two phases of the same run, loose
enough for a loaded machine (the benchmark's goal, benchmarks/api.py, is 0.4)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.support.servers import StillmotionServer, photo_bytes

CREATORS = 10
POLLERS = 150
PHASE_SECONDS = 4.0


@pytest.fixture
def srv(tmp_path):
    server = StillmotionServer(
        database_url=f"sqlite:///{tmp_path / 'stillmotion.db'}",
        data_dir=tmp_path,
        workers=0,
        env={"STILLMOTION_READ_LIMIT_PER_MINUTE": "1000000000"},
    ).start()
    yield server
    server.close()


def _set_limits(srv: StillmotionServer, account: str) -> None:
    limits = ["--plan", "enterprise", "--per-minute", "1000000", "--concurrent", "1000"]
    subprocess.run(
        [sys.executable, "-m", "stillmotion", "limits", "set", account, *limits],
        env=srv.env,
        capture_output=True,
        check=True,
        timeout=60,
    )


def _request(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(reader, writer, request: bytes) -> int:
    """One request on a keep-alive connection; the response's status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _client(port: int, request: bytes, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            started = time.monotonic()
            status = await _exchange(reader, writer, request)
            assert status in (200, 202), status
            latencies.append(time.monotonic() - started)
    finally:
        writer.close()


async def _phase(port: int, create: bytes, poll: bytes, pollers: int) -> tuple[list, list]:
    until = time.monotonic() + PHASE_SECONDS
    creates: list[float] = []
    polls: list[float] = []
    await asyncio.gather(
        *(_client(port, create, until, creates) for _ in range(CREATORS)),
        *(_client(port, poll, until, polls) for _ in range(pollers)),
    )
    return creates, polls


def test_creates_stay_answered_beside_a_crowd_of_pollers(srv):
    account = f"fair-{uuid.uuid4().hex[:6]}"
    key = srv.create_key(account, credits=10**9)
    _set_limits(srv, account)
    photo = base64.b64encode(photo_bytes("astronaut", size=256)).decode()
    image = "data:image/jpeg;base64," + photo
    body = {"service": "runway-i2v", "prompt": "", "image": image, "version": "gen-2"}
    time.sleep(1.1)  # the API remembers an account's limits for a second
    with srv.client(key) as client:
        created = client.post("/v1/image_to_video", json=body)
        assert created.status_code == 202, created.text
        gen_id = created.json()["data"]["imagevideo"]["id"]
        assert client.get(f"/v1/image_to_video/{gen_id}").status_code == 200
    create = _request("POST", "/v1/image_to_video", key, json.dumps(body).encode())
    poll = _request("GET", f"/v1/image_to_video/{gen_id}", key)

    alone, _ = asyncio.run(_phase(srv.port, create, poll, pollers=0))
    beside, polls = asyncio.run(_phase(srv.port, create, poll, pollers=POLLERS))

    assert len(polls) > POLLERS, "the pollers did not load the server"
    ratio = len(beside) / len(alone)
    assert ratio >= 0.25, (
        f"{len(alone)} creates alone, {len(beside)} beside {POLLERS} pollers "
        f"({len(polls)} polls): {ratio:.2f} of the rate alone"
    )
    # No create waited anywhere near a client's usual timeout.
    assert max(beside) < 5.0, f"slowest create beside the pollers: {max(beside):.1f} s"
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - started < 2.0
