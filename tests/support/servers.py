"""Real servers for tests: a `stillmotion serve` subprocess, and a loopback HTTP server that
serves photographs (and some bad files) for `imageUrl`."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
# Test peers (image server, webhook receivers) listen here, and only this address is
# allow-listed; the rest of loopback, 127.0.0.1 included, stays forbidden as in production.
TEST_HOST = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@cache
def photo_bytes(name: str = "astronaut", fmt: str = "JPEG", size: int | None = None) -> bytes:
    from PIL import Image
    from skimage import data

    image = Image.fromarray(getattr(data, name)())
    if image.mode != "RGB":
        image = image.convert("RGB")
    if size:
        image.thumbnail((size, size))
    buf = io.BytesIO()
    image.save(buf, fmt, quality=90)
    return buf.getvalue()


def small_request(image_server: ImageServer, **fields) -> dict:
    """A REST create body for the cheapest render (gen-2, 2 s, a small photograph)."""
    return {
        "service": "runway-i2v",
        "prompt": "",
        "imageUrl": image_server.url("/astronaut-small.jpg"),
        "version": "gen-2",
        "duration": 2,
        **fields,
    }


def small_gql_input(image_server: ImageServer, **options) -> dict:
    """The GraphQL `GenerateInput` for the same render as `small_request`."""
    return {
        "type": "VIDEO",
        "provider": "runway-i2v",
        "input": {"imageUrl": image_server.url("/astronaut-small.jpg")},
        "options": {"version": "gen-2", "duration": 2, **options},
    }


class ImageServer:
    """Serves `/<name>.jpg` photographs from skimage.data, and `/fake.png` (text), `/corrupt.jpg`,
    `/redirect?to=URL`, `/status/<code>`."""

    def __init__(self) -> None:
        files = {
            "/astronaut.jpg": (photo_bytes("astronaut"), "image/jpeg"),
            "/astronaut-small.jpg": (photo_bytes("astronaut", size=256), "image/jpeg"),
            "/chelsea.jpg": (photo_bytes("chelsea"), "image/jpeg"),
            "/coffee.png": (photo_bytes("coffee", "PNG"), "image/png"),
            "/fake.png": (b"this is a text file, not a PNG\n" * 10, "image/png"),
            "/corrupt.jpg": (photo_bytes("astronaut")[:2000], "image/jpeg"),
        }
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                if self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                    self.end_headers()
                    return
                if self.path.startswith("/status/"):
                    self.send_response(int(self.path.rsplit("/", 1)[1]))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, ctype = files.get(self.path, (None, None))
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((TEST_HOST, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{TEST_HOST}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class StillmotionServer:
    """`stillmotion serve` in a subprocess, over real HTTP on loopback."""

    def __init__(
        self,
        *,
        database_url: str,
        data_dir: Path | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="stillmotion-test-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.workers = workers
        self.env = {
            **os.environ,
            "STILLMOTION_DATABASE_URL": database_url,
            "STILLMOTION_DATA_DIR": str(self.data_dir),
            "STILLMOTION_PUBLIC_URL": self.url,
            "STILLMOTION_WORKERS": str(workers),
            "STILLMOTION_ALLOW_NETWORKS": f"{TEST_HOST}/32",
            # Tests check shapes and behaviour, not x264's quality: the fastest preset.
            "STILLMOTION_X264_PRESET": "ultrafast",
            "STILLMOTION_LEASE_SECONDS": "4",
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.workers_started: list[subprocess.Popen] = []
        self.log_path = self.data_dir / "server.log"

    def start(self) -> StillmotionServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stillmotion", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start in 60 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def close(self) -> None:
        """Stop the server and any worker processes a test left running."""
        self.stop()
        for proc in self.workers_started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def worker_process(self, threads: int = 1) -> subprocess.Popen:
        """A standalone `stillmotion worker` for the same database and storage."""
        log = open(self.data_dir / "worker.log", "ab")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "stillmotion", "worker", "--threads", str(threads)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )

    def create_key(
        self, account: str, *, plan: str = "pro", credits: int = 100_000, admin: bool = False
    ) -> str:
        from stillmotion.accounts import service as accounts
        from stillmotion.credits import service as credits_service
        from stillmotion.db import Database

        db = Database(self.database_url)
        try:
            with db.session(write=True) as session:
                acc, _ = accounts.get_or_create_account(session=session, name=account, plan=plan)
                if credits:
                    credits_service.grant(session=session, account_id=acc.id, amount=credits)
                _, key = accounts.create_key(session=session, account=acc, admin=admin)
                return key
        finally:
            db.dispose()

    def client(self, key: str, **kw) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw
        )
