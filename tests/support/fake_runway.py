"""A fake Runway developer API on 127.0.0.2 that holds its clients to the documented contract
(`../shared/RUNWAY.md`, version 2024-11-06) and is scripted per test.

It checks every request it gets and answers a broken one as Runway would (401, 400, 403), and
records the break in `violations`, so a test ends with `assert fake.violations == []`:

- `Authorization: Bearer <key>` on API calls (a well-formed Bearer of another key is answered
  401 but is no violation: a revoked key is a scenario, not a client bug), and none on output
  downloads (signed URLs on another host: a key sent there leaks);
- `X-Runway-Version: 2024-11-06`;
- `POST /v1/image_to_video`: a JSON object of known fields, none null; a known model; `ratio` among
  that model's pixel ratios; `duration` among its durations; `promptText` a string of at most
  1,000 characters; `seed` in 0 … 2³²−1; `promptImage` a `data:image/…;base64,` URI of at most
  5,000,000 characters whose bytes decode, as the type it declares, with Pillow;
- `GET`/`DELETE /v1/tasks/{id}` of a task it created; polls of one task no closer together than
  `min_poll_interval`.

Scripting: `script(PENDING, running(0.5), succeeded())` gives the next created task that list of
states, one per GET (the last repeats); `answer("create", 429, headers={"Retry-After": "1"})`
answers the next create so instead (`times=` for more). Routes: `create`, `get`, `delete`,
`output`. A succeeded task's output is served by the fake itself: a real MP4 made with PyAV
(`succeeded()`), a URL answering 404 (`succeeded("missing")`), or bytes that are no video
(`succeeded("not_video")`).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEST_HOST = "127.0.0.2"
API_VERSION = "2024-11-06"
DATA_URI_MAX = 5_000_000
PROMPT_MAX = 1000
SEED_MAX = 2**32 - 1
_GEN4 = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
_VEO = ("1280:720", "720:1280", "1080:1920", "1920:1080")
# Written from RUNWAY.md, not imported from the provider, so that a mistake there shows here.
MODELS: dict[str, dict[str, Any]] = {
    "gen4_turbo": {"ratios": _GEN4, "durations": range(2, 11), "last": False},
    "gen4.5": {"ratios": _GEN4, "durations": range(2, 11), "last": False, "required": True},
    "gen3a_turbo": {"ratios": ("1280:768", "768:1280"), "durations": (5, 10), "last": True},
    "veo3.1": {"ratios": _VEO, "durations": (4, 6, 8), "last": True},
    "veo3.1_fast": {"ratios": _VEO, "durations": (4, 6, 8), "last": True},
}
_BODY_FIELDS = {"model", "promptImage", "promptText", "ratio", "duration", "seed"}
_BODY_FIELDS |= {"contentModeration"}
_DATA_URI = re.compile(r"data:(image/(?:jpeg|png|webp));base64,([A-Za-z0-9+/]*={0,2})", re.S)
_PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_TASK_PATH = re.compile(r"/v1/tasks/([0-9a-f-]{36})")

PENDING = {"status": "PENDING"}
THROTTLED = {"status": "THROTTLED"}
CANCELLED = {"status": "CANCELLED"}


def running(progress: float) -> dict[str, Any]:
    return {"status": "RUNNING", "progress": progress}


def succeeded(output: str = "video") -> dict[str, Any]:
    """`output`: "video" (a real MP4), "missing" (its URL answers 404), "not_video"."""
    return {"status": "SUCCEEDED", "_output": output}


def failed(code: str | None, failure: str = "The task failed.") -> dict[str, Any]:
    state = {"status": "FAILED", "failure": failure}
    if code is not None:
        state["failureCode"] = code
    return state


@dataclass
class Recorded:
    method: str
    path: str
    route: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Task:
    id: str
    body: dict[str, Any]
    states: list[dict[str, Any]]
    created_at: str
    gets: int = 0
    last_seen: float = 0.0
    cancelled: bool = False
    deleted: bool = False
    shown: dict[str, Any] = field(default_factory=dict)


@cache
def mp4_bytes(width: int = 128, height: int = 72, seconds: int = 5, fps: int = 24) -> bytes:
    """A real H.264 MP4 (a moving gradient), made with PyAV."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
        for i in range(seconds * fps):
            rgb = np.broadcast_to((x + y + i * 4) % 256, (height, width, 3)).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


class FakeRunway:
    def __init__(
        self,
        *,
        api_key: str = "key_" + "ab" * 64,
        min_poll_interval: float = 0.0,
        prefix: str = "",
    ) -> None:
        self.api_key = api_key
        self.min_poll_interval = min_poll_interval
        self.prefix = prefix.rstrip("/")
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.tasks: dict[str, _Task] = {}
        self._scripts: deque[list[dict[str, Any]]] = deque()
        self._answers: dict[str, deque[tuple[int, Any, dict[str, str]]]] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Buffered: headers and body leave in one write, not two segments that Nagle and
            # a delayed ACK would hold 40 ms apart.
            wbufsize = 1 << 16

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((TEST_HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = f"http://{TEST_HOST}:{self.port}"
        self.base_url = self.origin + self.prefix
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    # --- scripting and reading -------------------------------------------------------------

    def script(self, *states: dict[str, Any]) -> None:
        """The states the next created task goes through, one per GET; the last repeats.
        Unscripted tasks succeed at once."""
        with self._lock:
            self._scripts.append(list(states))

    def answer(
        self,
        route: str,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests of `route` with `status` and `body` (JSON; None:
        `{"error": …}`) instead of serving them."""
        assert route in ("create", "get", "delete", "output"), route
        if body is None:
            body = {"error": f"scripted HTTP {status}"}
        with self._lock:
            queue = self._answers.setdefault(route, deque())
            for _ in range(times):
                queue.append((status, body, dict(headers or {})))

    def of(self, route: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.route == route]

    def count(self, route: str) -> int:
        return len(self.of(route))

    def counts(self) -> dict[str, int]:
        with self._lock:
            routes = [r.route for r in self.requests]
        return {route: routes.count(route) for route in dict.fromkeys(routes)}

    def output_url(self, task_id: str, kind: str = "video") -> str:
        return f"{self.origin}/outputs/{kind}/{task_id}.mp4?_jwt=signed"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- serving ---------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        path = h.path.split("?", 1)[0]
        route = self._route(method, path)
        record = Recorded(method, h.path, route, headers, body, time.monotonic())
        with self._lock:
            self.requests.append(record)
        status, payload, extra = self._answer(record, path)
        record.status = status
        if isinstance(payload, bytes):
            data, ctype = payload, extra.pop("Content-Type", "video/mp4")
        elif payload is None:
            data, ctype = b"", ""
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        h.send_response(status)
        if ctype:
            h.send_header("Content-Type", ctype)
        for name, value in extra.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str) -> str:
        if method == "GET" and path.startswith("/outputs/"):
            return "output"
        if not path.startswith(self.prefix + "/"):
            return "unknown"
        path = path[len(self.prefix) :]
        if method == "POST" and path == "/v1/image_to_video":
            return "create"
        if _TASK_PATH.fullmatch(path):
            return {"GET": "get", "DELETE": "delete"}.get(method, "unknown")
        return "unknown"

    def _violation(self, record: Recorded, text: str) -> None:
        with self._lock:
            self.violations.append(f"{record.method} {record.path.split('?')[0]}: {text}")

    def _answer(self, r: Recorded, path: str) -> tuple[int, Any, dict[str, str]]:
        if r.route == "unknown":
            self._violation(r, "no such endpoint")
            return 404, {"error": "Not found"}, {}
        if r.route == "output":
            if "authorization" in r.headers or "x-runway-version" in r.headers:
                self._violation(r, "API credentials sent to the output host")
        else:
            refused = self._check_headers(r)
            if refused:
                return refused
        match = _TASK_PATH.fullmatch(path[len(self.prefix) :])
        if r.route == "get" and match:
            self._check_pace(r, match.group(1))
        with self._lock:
            queue = self._answers.get(r.route)
            scripted = queue.popleft() if queue else None
        if scripted:
            return scripted
        if r.route == "create":
            return self._create(r)
        if r.route == "output":
            return self._output(path)
        assert match
        return self._task(r, match.group(1))

    def _check_pace(self, r: Recorded, task_id: str) -> None:
        """Every GET of a task, answered or refused, counts against Runway's pace."""
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None:
                return
            gap = r.at - task.last_seen
            task.last_seen = r.at
        if gap < self.min_poll_interval:
            self._violation(r, f"polled {gap:.3f} s after the last request for this task")

    def _check_headers(self, r: Recorded) -> tuple[int, Any, dict[str, str]] | None:
        auth = r.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            self._violation(r, f"Authorization is not 'Bearer <key>': {auth[:12]!r}")
            return 401, {"error": "Missing API key"}, {}
        if auth[7:] != self.api_key:
            return 401, {"error": "Incorrect API key provided"}, {}
        version = r.headers.get("x-runway-version")
        if version != API_VERSION:
            self._violation(r, f"X-Runway-Version is {version!r}, not {API_VERSION}")
            return 400, {"error": "Invalid or missing X-Runway-Version header"}, {}
        return None

    def _create(self, r: Recorded) -> tuple[int, Any, dict[str, str]]:
        if not r.headers.get("content-type", "").startswith("application/json"):
            self._violation(r, f"Content-Type {r.headers.get('content-type')!r}")
        try:
            body = json.loads(r.body)
        except ValueError:
            self._violation(r, "the body is not JSON")
            return 400, {"error": "Invalid JSON"}, {}
        problem = self._check_body(body)
        if problem:
            status, text = problem
            self._violation(r, text)
            return status, {"error": text}, {}
        task_id = str(uuid.uuid4())
        with self._lock:
            states = self._scripts.popleft() if self._scripts else [succeeded()]
            self.tasks[task_id] = _Task(
                id=task_id,
                body=body,
                states=states,
                created_at=datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
                last_seen=r.at,
            )
        return 200, {"id": task_id}, {}

    def _check_body(self, body: Any) -> tuple[int, str] | None:
        if not isinstance(body, dict):
            return 400, "the body is not a JSON object"
        for key, value in body.items():
            if key not in _BODY_FIELDS:
                return 400, f"Invalid parameter '{key}' (unknown)"
            if value is None:
                return 400, f"Invalid parameter '{key}' (null: leave it out instead)"
        model = MODELS.get(body.get("model"))  # type: ignore[arg-type]
        if model is None:
            return 403, f"Model variant {body.get('model')} is not available"
        if body.get("ratio") not in model["ratios"]:
            return 400, f"Invalid parameter 'ratio': {body.get('ratio')!r}"
        duration = body.get("duration")
        if duration is None and model.get("required"):
            return 400, "Invalid parameter 'duration' (required)"
        if duration is not None and (
            isinstance(duration, bool)
            or not isinstance(duration, int)
            or duration not in model["durations"]
        ):
            return 400, f"Invalid parameter 'duration': {duration!r}"
        text = body.get("promptText")
        if text is None and model.get("required"):
            return 400, "Invalid parameter 'promptText' (required)"
        if text is not None and (not isinstance(text, str) or len(text) > PROMPT_MAX):
            return 400, "Invalid parameter 'promptText'"
        seed = body.get("seed")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX
        ):
            return 400, "Invalid parameter 'seed'"
        moderation = body.get("contentModeration")
        if moderation is not None and (
            not isinstance(moderation, dict)
            or set(moderation) - {"publicFigureThreshold"}
            or moderation.get("publicFigureThreshold", "auto") not in ("auto", "low")
        ):
            return 400, "Invalid parameter 'contentModeration'"
        image = body.get("promptImage")
        if isinstance(image, list):
            if not image or not all(isinstance(i, dict) for i in image):
                return 400, "Invalid parameter 'promptImage'"
            for item in image:
                if set(item) != {"uri", "position"} or item["position"] not in ("first", "last"):
                    return 400, "Invalid parameter 'promptImage'"
                if item["position"] == "last" and not model["last"]:
                    return 400, f"{body['model']} takes no last frame"
                problem = _check_data_uri(item["uri"])
                if problem:
                    return 400, problem
            return None
        if image is None:
            return 400, "Invalid parameter 'promptImage' (required)"
        problem = _check_data_uri(image)
        return (400, problem) if problem else None

    def _task(self, r: Recorded, task_id: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            task = self.tasks.get(task_id)
        if task is None:
            self._violation(r, "a task this server never created")
            return 404, {"error": "Task not found"}, {}
        if task.deleted:
            return 404, {"error": "Task not found"}, {}
        if r.method == "DELETE":
            with self._lock:
                final = task.shown.get("status") in ("SUCCEEDED", "FAILED", "CANCELLED")
                task.deleted = final
                task.cancelled = not final
            return 204, None, {}
        with self._lock:
            if task.cancelled:
                state = dict(CANCELLED)
            else:
                state = dict(task.states[min(task.gets, len(task.states) - 1)])
            task.gets += 1
        shown: dict[str, Any] = {"id": task.id, "createdAt": task.created_at}
        kind = state.pop("_output", None)
        shown.update(state)
        if kind is not None:
            shown["output"] = [self.output_url(task.id, kind)]
        with self._lock:
            task.shown = shown
        return 200, shown, {}

    def _output(self, path: str) -> tuple[int, Any, dict[str, str]]:
        parts = path.split("/")  # "", "outputs", kind, "<id>.mp4"
        if len(parts) != 4:
            return 404, {"error": "Not found"}, {}
        kind, task_id = parts[2], parts[3].removesuffix(".mp4")
        with self._lock:
            task = self.tasks.get(task_id)
        if task is None or kind == "missing":
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "text/xml"}
        if kind == "not_video":
            return 200, b"<html>this is not a video</html>" * 40, {}
        width, height = (int(v) // 10 for v in task.body["ratio"].split(":"))
        return 200, mp4_bytes(width, height, task.body.get("duration", 5)), {}


def _check_data_uri(uri: Any) -> str | None:
    if not isinstance(uri, str):
        return "Invalid parameter 'promptImage'"
    if not uri.startswith("data:"):
        return "promptImage is not a data: URI (stillmotion sends its stored source inline)"
    if len(uri) > DATA_URI_MAX:
        return f"Invalid data URI: {len(uri)} characters, more than {DATA_URI_MAX}"
    match = _DATA_URI.fullmatch(uri)
    if not match:
        return "Invalid data URI"
    try:
        raw = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return "Invalid data URI (base64)"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            declared = _PIL_FORMATS[match.group(1)]
            if image.format != declared:
                return f"Invalid data URI: declared {match.group(1)}, holds {image.format}"
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError):
        return "Invalid data URI: not a decodable image"
    return None
