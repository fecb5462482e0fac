"""API benchmark: the cost of auth, limits and headers, creates alone and beside polling, pickup.

    .venv/bin/python benchmarks/api.py [--seconds 8] [--connections 32] [--rounds 2]

Needs `wrk` (Debian package) on PATH. Everything runs on loopback:

1. A bare FastAPI hello-world route and stillmotion's `GET /v1/image_to_video/{id}` (with an
   API key, the read limit counted and the rate-limit headers) are served by the same uvicorn
   settings (`stillmotion serve` runs `uvicorn.run(app, access_log=False)`; so does the hello
   app) and loaded the same way by wrk, alternating, `--rounds` times each.
2. `POST /v1/image_to_video` with a ~100 KB data-URI image at 20 concurrent connections
   (wrk with a Lua body), on a server with no workers (rendering would compete for the CPU),
   for an account with huge credits and limits.
3. Polling beside creates: the same creates at 50 connections alone, then beside 200
   connections polling a job (both wrk, back to back, `--rounds` times); the create rate
   beside the pollers as a share of the rate alone.
4. Worker pickup: a server with one idle embedded worker; jobs created one after another;
   `startedAt - createdAt` of each.

Prints a table; docs/benchmarks.md (## API) has the figures and the machine.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import functools
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.servers import free_port, photo_bytes  # noqa: E402

HELLO_APP = textwrap.dedent(
    """
    import sys, uvicorn
    from fastapi import FastAPI
    app = FastAPI()

    @app.get("/hello")
    async def hello():
        return {"hello": "world"}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info",
                access_log=False)
    """
)


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Server:
    def __init__(self, data_dir: Path, *, workers: int, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {
            **os.environ,
            "STILLMOTION_DATA_DIR": str(data_dir),
            "STILLMOTION_PUBLIC_URL": self.url,
            "STILLMOTION_WORKERS": str(workers),
            "STILLMOTION_X264_PRESET": "ultrafast",
            **env,
        }
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "stillmotion", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            cwd=self.data_dir,
        )
        return out.stdout

    def start(self) -> Server:
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stillmotion", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )
        wait_up(self.url + "/healthz")
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(20)


def make_key(server: Server) -> str:
    """An enterprise account with huge credits and limits (the limits are still counted)."""
    created = json.loads(
        server.cli(
            "keys",
            "create",
            "--account",
            "bench",
            "--plan",
            "enterprise",
            "--credits",
            "1000000000",
            "--json",
        )
    )
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{server.data_dir / 'stillmotion.db'}")
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE accounts SET limit_per_minute = 1000000, limit_concurrent = 1000 "
                "WHERE id = :id"
            ),
            {"id": created["accountId"]},
        )
    engine.dispose()
    return created["key"]


def set_rendering(server: Server, gen_id: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{server.data_dir / 'stillmotion.db'}")
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE generations SET stage = 'rendering', progress = 0.4, "
                "started_at = created_at WHERE id = :id"
            ),
            {"id": gen_id},
        )
    engine.dispose()


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    headers: dict[str, str],
    script: Path | None = None,
) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    result = {"rps": rps}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            value, unit = float(m.group(1)), m.group(2)
            result[f"p{pct}"] = value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["errors"] = float(non2xx.group(1)) if non2xx else 0.0
    # wrk counts a request unanswered within its timeout (2 s by default) as a socket error.
    timeouts = re.search(r"Socket errors:.*timeout (\d+)", out)
    result["timeouts"] = float(timeouts.group(1)) if timeouts else 0.0
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))
    return result


def mixed_run(
    *, api_url: str, poll_url: str, auth: dict[str, str], script: Path, seconds: int
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Creates at 50 connections alone, then the same beside 200 connections polling one job
    (started a second before the creates and stopped a second after them, so the creates
    meet polling for their whole run): (alone, beside, the polls)."""
    create = functools.partial(
        wrk,
        api_url + "/v1/image_to_video",
        seconds=seconds,
        connections=50,
        headers=auth,
        script=script,
    )
    alone = create()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        polls = pool.submit(wrk, poll_url, seconds=seconds + 2, connections=200, headers=auth)
        time.sleep(1)
        beside = create()
        return alone, beside, polls.result()


def data_uri_of_about(size: int) -> str:
    """A data URI of a JPEG photograph, re-encoded until the URI is at most `size` bytes."""
    from PIL import Image

    image = Image.open(io.BytesIO(photo_bytes("astronaut")))
    for quality in range(95, 10, -5):
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality)
        uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        if len(uri) <= size:
            return uri
    return uri


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pickups", type=int, default=15)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="stillmotion-bench-"))
    rows: list[tuple[str, str, str]] = []
    hello_port = free_port()
    hello = subprocess.Popen(
        [sys.executable, "-c", HELLO_APP, str(hello_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = Server(
        tmp / "api",
        workers=0,
        # The read limit is counted on every request, set high enough not to refuse wrk.
        env={"STILLMOTION_READ_LIMIT_PER_MINUTE": "1000000000"},
    )
    api.data_dir.mkdir()
    try:
        api.cli("migrate")
        key = make_key(api)
        api.start()
        wait_up(f"http://127.0.0.1:{hello_port}/hello")
        auth = {"Authorization": f"Bearer {key}"}
        image = data_uri_of_about(100_000)
        body = {"service": "runway-i2v", "prompt": "", "image": image, "version": "gen-2"}
        r = httpx.post(api.url + "/v1/image_to_video", json=body, headers=auth, timeout=30)
        r.raise_for_status()
        rendering_id = r.json()["data"]["imagevideo"]["id"]
        # No worker runs here (workers 0); the job is put in the state a polled job is in for
        # most of its life: rendering. A second one stays queued (the costlier view: its
        # stage and queue position count the jobs ahead of it).
        set_rendering(api, rendering_id)
        r = httpx.post(api.url + "/v1/image_to_video", json=body, headers=auth, timeout=30)
        queued_id = r.json()["data"]["imagevideo"]["id"]
        for gen_id in (rendering_id, queued_id):
            read = httpx.get(f"{api.url}/v1/image_to_video/{gen_id}", headers=auth)
            assert read.status_code == 200 and "x-ratelimit-limit" in read.headers

        runs: dict[str, list[dict[str, float]]] = {
            "hello": [],
            "rendering": [],
            "queued": [],
            "runway": [],
        }
        targets = {
            "hello": (f"http://127.0.0.1:{hello_port}/hello", {}),
            "rendering": (f"{api.url}/v1/image_to_video/{rendering_id}", auth),
            "queued": (f"{api.url}/v1/image_to_video/{queued_id}", auth),
            # The same job as Runway's task (docs/api.md §13), as its SDKs poll it.
            "runway": (
                f"{api.url}/runway/v1/tasks/{rendering_id}",
                {**auth, "X-Runway-Version": "2024-11-06"},
            ),
        }
        for _ in range(args.rounds):
            for name, (url, headers) in targets.items():
                runs[name].append(
                    wrk(url, seconds=args.seconds, connections=args.connections, headers=headers)
                )
        hello_rps = statistics.median(r["rps"] for r in runs["hello"])
        rows.append(("hello world GET (bare FastAPI)", f"{hello_rps:,.0f} req/s", ""))
        for name in ("rendering", "queued"):
            assert all(r["errors"] == 0 for r in runs[name]), runs[name]
            rps = statistics.median(r["rps"] for r in runs[name])
            p99 = statistics.median(r["p99"] for r in runs[name])
            rows.append(
                (
                    f"GET /v1/image_to_video/{{id}}, {name} job",
                    f"{rps:,.0f} req/s",
                    f"{rps / hello_rps:.2f}× hello (goal ≥ 0.5×); p99 {p99:.1f} ms",
                )
            )

        assert all(r["errors"] == 0 for r in runs["runway"]), runs["runway"]
        runway_rps = statistics.median(r["rps"] for r in runs["runway"])
        native_rps = statistics.median(r["rps"] for r in runs["rendering"])
        rows.append(
            (
                "GET /runway/v1/tasks/{id}, rendering job",
                f"{runway_rps:,.0f} req/s",
                f"{runway_rps / native_rps:.2f}× the native GET (goal ≥ 0.9×)",
            )
        )

        # wrk's Lua: one fixed body; with `keyed`, a fresh Idempotency-Key on every request
        # (what the SDK sends), unique across wrk's threads (each gets its own number).
        script = tmp / "create.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(json.dumps(body))}\n"
        )
        keyed = tmp / "create-keyed.lua"
        keyed.write_text(
            script.read_text()
            + textwrap.dedent(
                f"""
                local threads = 0
                function setup(thread)
                  threads = threads + 1
                  thread:set("prefix", "{uuid.uuid4().hex[:8]}-" .. threads .. "-")
                end
                local n = 0
                function request()
                  n = n + 1
                  local headers = {{}}
                  for k, v in pairs(wrk.headers) do headers[k] = v end
                  headers["Idempotency-Key"] = prefix .. n
                  return wrk.format(nil, nil, headers, nil)
                end
                """
            )
        )
        size = len(image)
        for lua, label, goal in (
            (script, "", " (goal p99 < 50 ms)"),
            (keyed, ", each with its own Idempotency-Key", ""),
        ):
            create = wrk(
                api.url + "/v1/image_to_video",
                seconds=args.seconds,
                connections=20,
                headers=auth,
                script=lua,
            )
            assert create["errors"] == 0, create
            rows.append(
                (
                    f"POST create, {size // 1000} KB data URI, 20 concurrent{label}",
                    f"{create['rps']:,.0f} req/s",
                    f"p50 {create['p50']:.1f} ms, p90 {create['p90']:.1f} ms, "
                    f"p99 {create['p99']:.1f} ms{goal}",
                )
            )

        # Polling beside creates (issue 10, item 7): the create rate beside 200 polling
        # connections as a share of the rate alone, measured back to back, `--rounds` times.
        mixed = [
            mixed_run(
                api_url=api.url,
                poll_url=f"{api.url}/v1/image_to_video/{rendering_id}",
                auth=auth,
                script=script,
                seconds=args.seconds,
            )
            for _ in range(args.rounds)
        ]
        for alone, beside, polls in mixed:
            assert alone["errors"] == beside["errors"] == polls["errors"] == 0, mixed
        ratios = sorted(beside["rps"] / alone["rps"] for alone, beside, _ in mixed)
        alone_rps = statistics.median(m[0]["rps"] for m in mixed)
        beside_rps = statistics.median(m[1]["rps"] for m in mixed)
        rows.append(
            (
                "POST create, 50 connections, alone",
                f"{alone_rps:,.0f} req/s",
                f"p99 {statistics.median(m[0]['p99'] for m in mixed):.0f} ms",
            )
        )
        rows.append(
            (
                "POST create, 50 connections, beside 200 polling",
                f"{beside_rps:,.0f} req/s",
                f"{statistics.median(ratios):.2f}× alone (goal ≥ 0.4×; rounds "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + f"); p99 {statistics.median(m[1].get('p99', 0) for m in mixed):.0f} ms; "
                f"{sum(m[1]['timeouts'] for m in mixed):.0f} of "
                f"{sum(m[1]['requests'] for m in mixed):.0f} over wrk's 2 s timeout",
            )
        )
        rows.append(
            (
                "GET polls meanwhile, 200 connections",
                f"{statistics.median(m[2]['rps'] for m in mixed):,.0f} req/s",
                f"p99 {statistics.median(m[2]['p99'] for m in mixed):.0f} ms",
            )
        )
    finally:
        api.stop()
        hello.terminate()
        hello.wait(10)

    worker_srv = Server(tmp / "pickup", workers=1, env={})
    worker_srv.data_dir.mkdir()
    try:
        worker_srv.cli("migrate")
        key = make_key(worker_srv)
        worker_srv.start()
        auth = {"Authorization": f"Bearer {key}"}
        small = (
            "data:image/jpeg;base64,"
            + base64.b64encode(photo_bytes("astronaut", size=256)).decode()
        )
        body = {
            "service": "runway-i2v",
            "prompt": "",
            "image": small,
            "version": "gen-2",
            "duration": 2,
        }
        pickups = []
        with httpx.Client(base_url=worker_srv.url, headers=auth, timeout=30) as client:
            for _ in range(args.pickups):
                gen = client.post("/v1/image_to_video", json=body).json()["data"]["imagevideo"]
                while gen["status"] == "processing":
                    time.sleep(0.05)
                    gen = client.get(f"/v1/image_to_video/{gen['id']}").json()["data"]["imagevideo"]
                started = parse_time(gen["startedAt"]) - parse_time(gen["createdAt"])
                pickups.append(started.total_seconds() * 1000)
        pickups.sort()
        rows.append(
            (
                "idle worker pickup (accepted → rendering)",
                f"{statistics.median(pickups):.1f} ms median",
                f"max {pickups[-1]:.1f} ms over {len(pickups)} jobs (goal < 250 ms)",
            )
        )
    finally:
        worker_srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'measure':<{width}}  {'result':>{vwidth}}  note")
    print("-" * (width + vwidth + 40))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")


if __name__ == "__main__":
    main()
