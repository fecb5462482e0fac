"""How `stillmotion serve` holds up against connections that never finish a request, and what it
tells operators: header and keep-alive timeouts, the connection cap, one quiet line when the
process runs out of file descriptors, the access log, and 503 when the disk is full.

Every server here is a real `stillmotion serve` subprocess; its file-descriptor limit is lowered
with `prlimit` once it runs, so a few hundred sockets are enough to exhaust it."""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import statistics
import subprocess
import time
from contextlib import ExitStack

import httpx
import pytest

from tests.support.servers import photo_bytes

HALF_SENT = b"GET / HTTP/1.1\r\nHost: x\r\n"  # headers never finished


def _half_sent(srv, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(HALF_SENT)
        sockets.append(s)
    return sockets


def _read_until_closed(s: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before closing `s`, or None if it is still open at `deadline`."""
    received = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def _healthz_seconds(srv) -> float:
    started = time.monotonic()
    response = httpx.get(srv.url + "/healthz", timeout=10)
    assert response.status_code == 200
    return time.monotonic() - started


def _limit_files(srv, limit: int) -> None:
    resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (limit, limit))


def test_half_sent_requests_are_closed_after_the_header_timeout_and_healthz_answers(make_server):
    srv = make_server(
        "sqlite",
        workers=0,
        env={"STILLMOTION_HEADER_TIMEOUT_SECONDS": "3", "STILLMOTION_MAX_CONNECTIONS": "100"},
    ).start()
    _limit_files(srv, 256)  # 400 idle sockets would exhaust it without the cap
    with ExitStack() as stack:
        sockets = _half_sent(srv, 400)
        for s in sockets:
            stack.callback(s.close)
        opened = time.monotonic()
        # Meanwhile the server answers: the oldest idle connections make room for new ones.
        timings = [_healthz_seconds(srv) for _ in range(8)]
        assert max(timings) < 2.0, timings
        assert statistics.median(timings) < 0.5, timings
        # Every half-sent connection is closed: the oldest to make room, the rest once the
        # header timeout has passed (with a 408 in the API's error body).
        answers = [_read_until_closed(s, opened + 3 + 10) for s in sockets]
    assert all(a is not None for a in answers), f"{answers.count(None)} still open"
    timed_out = [a for a in answers if a]
    assert timed_out, "no connection lived to its header timeout"
    for answer in timed_out:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer
        assert json.loads(body)["errors"][0]["extensions"]["code"] == "REQUEST_TIMEOUT"
    log = srv.log_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert "accept() failed" not in log  # the cap kept descriptors in hand
    assert "closed the longest idle one to make room" in log
    assert len(log) < 20_000, f"the log grew to {len(log)} bytes"


def test_out_of_file_descriptors_logs_a_line_not_a_traceback_per_accept(make_server):
    srv = make_server(
        "sqlite",
        workers=0,
        env={"STILLMOTION_HEADER_TIMEOUT_SECONDS": "3", "STILLMOTION_MAX_CONNECTIONS": "5000"},
    ).start()
    _limit_files(srv, 128)
    with ExitStack() as stack:
        sockets = _half_sent(srv, 300)  # more than the process can accept
        for s in sockets:
            stack.callback(s.close)
        time.sleep(5)  # the header timeout frees descriptors; the backlog is accepted meanwhile
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(srv.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not recover"
    log = srv.log_path.read_text(errors="replace")
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "accept" in line and "open files" in line]
    assert 1 <= len(lines) <= 5, lines[:10]
    assert len(log) < 20_000, f"the log grew to {len(log)} bytes"


def test_idle_keep_alive_connections_are_closed_after_the_keepalive_setting(make_server):
    srv = make_server("sqlite", workers=0, env={"STILLMOTION_KEEPALIVE_SECONDS": "1"}).start()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            chunk = s.recv(65536)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        started = time.monotonic()
        rest = _read_until_closed(s, started + 4)  # uvicorn's own default would be 5 s
    assert rest == b""


def _access_lines(srv, path: str, count: int) -> list[dict]:
    """The access log's lines for `path`, once there are `count` (or after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [
            entry
            for line in srv.log_path.read_text(errors="replace").splitlines()
            if "stillmotion.access: " in line
            for entry in [json.loads(line.split("stillmotion.access: ", 1)[1])]
            if entry["path"] == path
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_access_log_has_one_structured_line_per_request_and_no_key(make_server):
    srv = make_server("sqlite", workers=0).start()
    key = srv.create_key("access-log")
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        mine = client.get(
            "/v1/account",
            params={"api_key": "s3cret-query-value"},
            headers={"Authorization": f"Bearer {key}", "X-Request-ID": "req-abc.123"},
        )
        other = client.get("/v1/account", headers={"X-API-Key": key})
        refused = client.get("/v1/account", headers={"X-Request-ID": 'bad "forged" id'})
    assert mine.status_code == 200 and other.status_code == 200 and refused.status_code == 401
    assert mine.headers["x-request-id"] == "req-abc.123"
    generated = other.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"])
    account_id = mine.json()["data"]["account"]["id"]

    lines = _access_lines(srv, "/v1/account", 3)
    assert len(lines) == 3, lines
    first, second, third = lines
    assert first["method"] == "GET" and first["status"] == 200
    assert first["request_id"] == "req-abc.123" and first["account"] == account_id
    assert second["request_id"] == generated and second["account"] == account_id
    assert third["status"] == 401 and third["account"] is None
    assert third["request_id"] == refused.headers["x-request-id"]
    assert all(isinstance(line["ms"], int | float) and line["ms"] >= 0 for line in lines)
    assert first["client"] == "127.0.0.1"
    log = srv.log_path.read_text(errors="replace")
    assert key not in log and key[:12] not in log
    assert "s3cret-query-value" not in log and "forged" not in log


def test_access_log_can_be_turned_off(make_server):
    srv = make_server("sqlite", workers=0, env={"STILLMOTION_ACCESS_LOG": "false"}).start()
    assert httpx.get(srv.url + "/healthz", timeout=10).status_code == 200
    time.sleep(0.5)
    assert "stillmotion.access" not in srv.log_path.read_text(errors="replace")


@pytest.fixture
def small_disk():
    """Mounts a 4 MiB tmpfs on a folder (needs root); unmounted after the test."""
    mounted_on = []

    def mount(folder):
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"mounting a small tmpfs needs root: {done.stderr.decode().strip()}")
        mounted_on.append(folder)
        return folder

    yield mount
    for folder in mounted_on:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder) -> None:
    with open(folder / "filler", "wb") as fh:
        chunk = b"\0" * 65536
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError:
            pass
        # The last partial page may still take a few bytes: fill it too.
        for size in (4096, 512, 1):
            try:
                while True:
                    os.write(fh.fileno(), b"\0" * size)
            except OSError:
                pass


def test_a_full_disk_answers_503_with_retry_after_and_recovers(make_server, small_disk):
    srv = make_server("sqlite", workers=0)
    media = small_disk(srv.data_dir / "media")
    srv.start()
    key = srv.create_key("disk-full")
    photo = photo_bytes("coffee", size=300)
    _fill(media)
    with srv.client(key) as client:
        response = client.post("/v1/uploads", files={"file": ("p.jpg", photo, "image/jpeg")})
        assert response.status_code == 503, response.text
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "STORAGE_FULL"
        assert int(response.headers["retry-after"]) == error["extensions"]["retryAfter"] >= 1
        assert client.get("/readyz").status_code == 503

        (media / "filler").unlink()
        response = client.post("/v1/uploads", files={"file": ("p.jpg", photo, "image/jpeg")})
        assert response.status_code == 201, response.text
    assert "Traceback" not in srv.log_path.read_text(errors="replace")


def test_keep_alive_requests_are_not_held_by_nagles_algorithm(server):
    """Each response is two writes (headers, body); on a connection with Nagle's algorithm on,
    the second waits for the client's delayed ACK: 40 ms per request (every GET was capped at
    ~720/s). The median of 30 sequential requests on one connection stays well under that."""
    import statistics
    import time

    import httpx

    times = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.get("/healthz")
        for _ in range(30):
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.025, sorted(times)
