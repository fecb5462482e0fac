"""The `runway` provider: renders a job with Runway's developer API (or any API that speaks it).

One job attempt makes at most one upstream task. Its id is checkpointed (`checkpoint({"task_id":
…})`) before the first poll, so an attempt that resumes after a crash or a re-claim polls the
same task; a new task is created only once the old one is known to have failed with a retryable
code (the checkpoint then drops its id).

How an upstream answer becomes ours:

    PENDING / THROTTLED / RUNNING(p)  on_progress(…, "queued_upstream" | "throttled_upstream"
                                      | "rendering"), then "downloading" once SUCCEEDED
    SUCCEEDED                         output[0] downloaded at once through `net` (with its caps),
                                      decoded with PyAV, poster from the first frame
    FAILED SAFETY.* (any SAFETY part) ProviderError(code="CONTENT_MODERATION"), not retried
    FAILED INTERNAL.*                 ProviderRetry: the worker tries again in another attempt
    FAILED otherwise, CANCELLED       ProviderError(code="PROVIDER_ERROR")
    HTTP 408/429/5xx, network errors  backed off with jitter (Retry-After honoured) until
                                      `deadline_seconds`, then ProviderRetry
    HTTP 401/403                      ProviderError(code="PROVIDER_UNAVAILABLE"); the provider
                                      reports itself unavailable for `unavailable_seconds`
    other 4xx, output 4xx / no video  ProviderError(code="PROVIDER_ERROR")

`render` raises `Cancelled` when `should_cancel()` says so (checked between polls and during
every wait) and leaves the upstream task alone, since a worker that is only shutting down hands
the job back to be resumed; the caller sends `cancel(state)` when the job itself was cancelled.

No log line carries the key, the source image, the prompt, a signed output URL or the
upstream's failure text (which may quote the prompt); the failure text goes only into the
error's message, to the job's owner.
"""

from __future__ import annotations

import base64
import functools
import io
import ipaddress
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import av
import httpx
from PIL import Image, ImageOps

from stillmotion import net
from stillmotion.client.errors import parse_retry_after
from stillmotion.errors import ImageFetchFailed, PayloadTooLarge, UrlNotAllowed
from stillmotion.providers.base import (
    Cancelled,
    Checkpoint,
    ProviderError,
    ProviderRetry,
    RenderJob,
    RenderOutput,
)
from stillmotion.services import runway_models
from stillmotion.services.catalogue import RunwaySettings, ServiceSpec

__all__ = ["ProviderRetry", "RunwayProvider", "Stage", "TaskStatus"]

log = logging.getLogger("stillmotion.providers.runway")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NO_STATE: Mapping[str, Any] = MappingProxyType({})
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
_BACKOFF_CAP = 60.0
_SLICE = 0.25
"""The longest sleep between two `should_cancel()` checks."""


class Stage(StrEnum):
    """The stages a Runway job reports while upstream (our `stage` column)."""

    QUEUED_UPSTREAM = "queued_upstream"
    THROTTLED_UPSTREAM = "throttled_upstream"
    RENDERING = "rendering"
    DOWNLOADING = "downloading"


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    THROTTLED = "THROTTLED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class _DownloadFailed(Exception):
    """The output download failed in a way a fresh URL (a new GET of the task) may mend."""


class RunwayProvider:
    """Renders jobs of one catalogue service through a Runway-compatible API.

    Thread-safe: one instance serves every worker thread of a process (one connection pool).
    """

    name = "runway"

    def __init__(
        self,
        settings: RunwaySettings,
        *,
        service_id: str,
        allow_networks: Sequence[Network] = (),
    ) -> None:
        self.settings = settings
        self.service_id = service_id
        self._networks = tuple(allow_networks) + tuple(settings.output_networks)
        self._base = settings.base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {settings.api_key}",
            "X-Runway-Version": runway_models.API_VERSION,
            "Accept": "application/json",
            "User-Agent": "stillmotion",
        }
        # trust_env=False: the operator's base URL, not an environment proxy, says where to go.
        self._client = httpx.Client(
            timeout=httpx.Timeout(settings.request_timeout),
            trust_env=False,
            follow_redirects=False,
        )
        self._lock = threading.Lock()
        self._refused_until = 0.0
        self._refused_reason: str | None = None
        self._counters = dict.fromkeys(("creates", "polls", "downloads", "refusals"), 0)
        self._counters |= dict.fromkeys(("backoffs", "cancels"), 0)

    @classmethod
    def from_spec(
        cls, spec: ServiceSpec, *, allow_networks: Sequence[Network] = ()
    ) -> RunwayProvider:
        """The provider of a `runway` service of the catalogue. `allow_networks`: the server's
        `STILLMOTION_ALLOW_NETWORKS`, which the output download may also reach."""
        if not isinstance(spec.settings, RunwaySettings):
            raise TypeError(f"service {spec.id!r} is not a runway service")
        return cls(spec.settings, service_id=spec.id, allow_networks=allow_networks)

    def close(self) -> None:
        self._client.close()

    def counters(self) -> dict[str, int]:
        """Upstream requests and events since start, for metrics: creates, polls, downloads,
        refusals (401/403), backoffs, cancels."""
        with self._lock:
            return dict(self._counters)

    # --- availability ---------------------------------------------------------------------

    def availability(self) -> tuple[bool, str | None]:
        """Whether the service can take jobs now, and why not."""
        if not self.settings.api_key:
            return False, f"{self.settings.api_key_env} is not set"
        with self._lock:
            if time.monotonic() < self._refused_until:
                return False, self._refused_reason
        return True, None

    def _refused(self, status: int, message: str) -> ProviderError:
        what = "API key" if status == 401 else "API key or model"
        reason = f"the upstream refused the {what} (HTTP {status})"
        if status == 403 and message:
            reason += f": {message}"
        until = datetime.now(UTC).timestamp() + self.settings.unavailable_seconds
        shown = datetime.fromtimestamp(until, UTC).strftime("%H:%M:%S UTC")
        with self._lock:
            self._refused_until = time.monotonic() + self.settings.unavailable_seconds
            self._refused_reason = f"{reason}; trying again after {shown}"
            self._counters["refusals"] += 1
        log.error(
            "runway service %s: %s; unavailable for %g s",
            self.service_id,
            reason,
            self.settings.unavailable_seconds,
        )
        return ProviderError(
            f"The service {self.service_id} is unavailable: {reason}.",
            code="PROVIDER_UNAVAILABLE",
        )

    # --- render ---------------------------------------------------------------------------

    def render(
        self,
        job: RenderJob,
        *,
        workdir: Path,
        on_progress: Callable[[float, str], None],
        should_cancel: Callable[[], bool],
        state: Mapping[str, Any] = _NO_STATE,
        checkpoint: Checkpoint | None = None,
    ) -> RenderOutput:
        """Render `job` upstream, resuming the task `state["task_id"]` when a previous attempt
        checkpointed one. Raises ProviderError, ProviderRetry or Cancelled."""
        available, reason = self.availability()
        if not available:
            raise ProviderError(
                f"The service {self.service_id} is unavailable: {reason}.",
                code="PROVIDER_UNAVAILABLE",
            )
        save = checkpoint or (lambda _state: None)
        backoff = _Backoff(self, should_cancel)
        task_id = state.get("task_id")
        resumed = isinstance(task_id, str) and bool(task_id)
        if resumed:
            log.info("generation %s: resuming upstream task %s", job.generation_id, task_id)
        else:
            body = self._body(job)
            if should_cancel():
                raise Cancelled()
            task_id = self._create(job, body, backoff)
            save({"task_id": task_id})
        assert isinstance(task_id, str)
        # A resumed task was polled by the previous attempt maybe a moment ago (a graceful
        # hand-back is claimed again at once): the pace holds across attempts too.
        poll_now = False
        while True:
            task = self._wait_for_final(job, task_id, backoff, on_progress, should_cancel, poll_now)
            if task["status"] == TaskStatus.FAILED:
                raise self._failure(job, task_id, task, save)
            if task["status"] == TaskStatus.CANCELLED:
                raise ProviderError("The upstream task was cancelled.", code="PROVIDER_ERROR")
            on_progress(0.9, Stage.DOWNLOADING)
            try:
                return self._finish(job, task_id, task, workdir)
            except _DownloadFailed as exc:
                # Signed URLs expire and CDNs hiccup: a new GET of the task gives a fresh URL.
                backoff.wait(str(exc), None)
                poll_now = True

    def _body(self, job: RenderJob) -> dict[str, Any]:
        options = job.options
        version = options.get("version")
        model_id = self.settings.models.get(str(version), self.settings.model)
        model = runway_models.MODELS[model_id]
        aspect = options.get("aspect_ratio", "16:9")
        ratio = model.ratios.get(str(aspect))
        if ratio is None:
            raise ProviderError(
                f"The service {self.service_id} cannot render aspect ratio {aspect}.",
                code="PROVIDER_ERROR",
            )
        duration = int(options.get("duration") or 5)
        if duration not in model.durations:
            raise ProviderError(
                f"The service {self.service_id} cannot render {duration} s clips.",
                code="PROVIDER_ERROR",
            )
        body: dict[str, Any] = {
            "model": model_id,
            "promptImage": data_uri(job.source),
            "ratio": ratio,
            "duration": duration,
        }
        prompt = options.get("prompt")
        if prompt:
            body["promptText"] = str(prompt)[: runway_models.PROMPT_TEXT_MAX]
        elif model.prompt_required:
            raise ProviderError(
                f"The service {self.service_id} needs a prompt.", code="PROVIDER_ERROR"
            )
        seed = options.get("seed")
        if seed is not None:
            body["seed"] = int(seed)
        return body

    def _create(self, job: RenderJob, body: dict[str, Any], backoff: _Backoff) -> str:
        response = self._request("POST", "/v1/image_to_video", backoff, json=body, create=True)
        task_id = _json(response).get("id")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderRetry("The upstream accepted the job but named no task.")
        with self._lock:
            self._counters["creates"] += 1
        log.info(
            "generation %s: created upstream task %s (service %s, model %s)",
            job.generation_id,
            task_id,
            self.service_id,
            body["model"],
        )
        return task_id

    def _wait_for_final(
        self,
        job: RenderJob,
        task_id: str,
        backoff: _Backoff,
        on_progress: Callable[[float, str], None],
        should_cancel: Callable[[], bool],
        poll_now: bool,
    ) -> dict[str, Any]:
        seen: str | None = None
        while True:
            if not poll_now:
                pause = self.settings.poll_interval * (1 + random.random() / 2)
                _sleep(pause, should_cancel)
            poll_now = False
            if should_cancel():
                raise Cancelled()
            task = _json(self._request("GET", f"/v1/tasks/{task_id}", backoff))
            with self._lock:
                self._counters["polls"] += 1
            status = task.get("status")
            if status != seen:
                log.info("generation %s: upstream task %s", job.generation_id, _word(status))
                seen = status if isinstance(status, str) else None
            if status in FINAL:
                return task
            if status == TaskStatus.RUNNING:
                progress = task.get("progress")
                fraction = float(progress) if isinstance(progress, int | float) else 0.0
                on_progress(0.05 + 0.8 * min(max(fraction, 0.0), 1.0), Stage.RENDERING)
            elif status == TaskStatus.THROTTLED:
                on_progress(0.0, Stage.THROTTLED_UPSTREAM)
            else:  # PENDING, or a state newer than this client: keep waiting
                on_progress(0.0, Stage.QUEUED_UPSTREAM)

    def _failure(
        self,
        job: RenderJob,
        task_id: str,
        task: Mapping[str, Any],
        save: Callable[[dict[str, Any]], None],
    ) -> Exception:
        code = task.get("failureCode")
        code = code if isinstance(code, str) else ""
        text = _safe(task.get("failure"), self.settings.api_key) or "The upstream task failed."
        parts = code.upper().split(".")
        log.warning(
            "generation %s: upstream task %s failed (%s)",
            job.generation_id,
            task_id,
            _word(code) if code else "no failure code",
        )
        if "SAFETY" in parts:
            return ProviderError(text, code="CONTENT_MODERATION")
        if "INTERNAL" in parts:
            # Known failed: the next attempt may create a new task.
            save({"failed_task_id": task_id})
            return ProviderRetry(text)
        return ProviderError(text, code="PROVIDER_ERROR")

    # --- the output -----------------------------------------------------------------------

    def _finish(
        self, job: RenderJob, task_id: str, task: Mapping[str, Any], workdir: Path
    ) -> RenderOutput:
        output = task.get("output")
        if not isinstance(output, list) or not output or not isinstance(output[0], str):
            raise ProviderError("The upstream task succeeded without an output.")
        content = self._download(output[0])
        video = workdir / f"{job.generation_id}.mp4"
        poster = workdir / f"{job.generation_id}.jpg"
        video.write_bytes(content)
        try:
            width, height, fps, frames = _probe(video, poster)
        except (av.FFmpegError, _NotVideo, OSError, ValueError):
            raise ProviderError("The upstream's output is not an MP4 video.") from None
        log.info(
            "generation %s: upstream output %dx%d, %d frames, %d bytes",
            job.generation_id,
            width,
            height,
            frames,
            len(content),
        )
        return RenderOutput(
            video_path=video,
            poster_path=poster,
            width=width,
            height=height,
            fps=fps,
            frames=frames,
            bytes=len(content),
            extra={"upstream": {"service": self.service_id, "task_id": task_id}},
        )

    def _download(self, url: str) -> bytes:
        host = httpx.URL(url).host if url.startswith(("http://", "https://")) else ""
        if not _host_allowed(host, self.settings.allowed_output_hosts):
            log.error("runway service %s: output host %s is not allowed", self.service_id, host)
            raise ProviderError("The upstream's output is on a host this server may not reach.")
        with self._lock:
            self._counters["downloads"] += 1
        fetch = functools.partial(
            net.fetch,
            url,
            allow_networks=self._networks,
            max_bytes=self.settings.max_output_bytes,
            timeout=self.settings.download_timeout,
            # Redirects are re-checked by `net`, but only an empty host list may lead anywhere.
            max_redirects=0 if self.settings.allowed_output_hosts else 3,
        )
        try:
            return anyio.run(fetch).content
        except UrlNotAllowed:
            raise ProviderError(
                "The upstream's output is on an address this server may not reach."
            ) from None
        except PayloadTooLarge:
            limit = self.settings.max_output_bytes
            raise ProviderError(f"The upstream's output is larger than {limit} bytes.") from None
        except ImageFetchFailed as exc:
            status = _status_of(exc)
            if status is not None and 400 <= status < 500 and status not in _TRANSIENT:
                raise ProviderError(
                    f"The upstream's output could not be downloaded (HTTP {status})."
                ) from None
            raise _DownloadFailed(f"output download failed ({status or 'no answer'})") from None

    # --- cancel ---------------------------------------------------------------------------

    def cancel(self, state: Mapping[str, Any]) -> None:
        """Cancel (or delete) the upstream task `state` names; best effort: logged, never
        raises."""
        task_id = state.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            return
        with self._lock:
            self._counters["cancels"] += 1
        try:
            response = self._client.request(
                "DELETE",
                f"{self._base}/v1/tasks/{task_id}",
                headers={**self._headers, "Accept": "*/*"},
            )
        except httpx.HTTPError as exc:
            log.warning("upstream task %s: cancel not sent (%s)", task_id, type(exc).__name__)
            return
        except Exception:  # never raises: a cancel must not fail the caller's cancel
            log.exception("upstream task %s: cancel failed", task_id)
            return
        if response.status_code < 300:
            log.info("upstream task %s: cancelled", task_id)
        elif response.status_code == 404:
            log.info("upstream task %s: cancel: the task is gone already", task_id)
        else:
            log.warning("upstream task %s: cancel answered HTTP %d", task_id, response.status_code)

    # --- HTTP -----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        backoff: _Backoff,
        *,
        json: Any = None,
        create: bool = False,
    ) -> httpx.Response:
        url = self._base + path
        while True:
            try:
                response = self._client.request(method, url, json=json, headers=self._headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                backoff.wait(f"not reachable ({type(exc).__name__})", None)  # nothing was sent
                continue
            except httpx.TransportError as exc:
                if create:
                    # The create may have made a task whose id we never saw; with no task list
                    # and no idempotency key upstream, trying again here could make a second.
                    raise ProviderRetry(
                        f"The upstream's answer to the create was lost ({type(exc).__name__})."
                    ) from None
                backoff.wait(f"no answer ({type(exc).__name__})", None)
                continue
            status = response.status_code
            if status < 300:
                backoff.reset()
                return response
            message = _safe(_json(response).get("error"), self.settings.api_key)
            if status in (401, 403):
                raise self._refused(status, message)
            if status in _TRANSIENT:
                retry_after = _retry_after(response.headers)
                if response.headers.get("x-should-retry", "").lower() == "false":
                    raise ProviderRetry(
                        f"The upstream is busy (HTTP {status}).", retry_after=retry_after
                    )
                backoff.wait(f"HTTP {status}", retry_after)
                continue
            endpoint = path.split("/")[2]  # image_to_video | tasks
            log.warning(
                "runway service %s: %s %s answered HTTP %d",
                self.service_id,
                method,
                endpoint,
                status,
            )
            raise ProviderError(
                f"The upstream refused the request (HTTP {status}): {message or 'no reason'}",
                code="PROVIDER_ERROR",
            )


class _Backoff:
    """Exponential back-off with jitter over one stretch of upstream trouble: `wait` sleeps,
    or raises ProviderRetry once the stretch would pass `deadline_seconds`."""

    def __init__(self, provider: RunwayProvider, should_cancel: Callable[[], bool]) -> None:
        self._provider = provider
        self._should_cancel = should_cancel
        self._failures = 0
        self._since: float | None = None

    def reset(self) -> None:
        self._failures = 0
        self._since = None

    def wait(self, reason: str, retry_after: float | None) -> None:
        settings = self._provider.settings
        now = time.monotonic()
        if self._since is None:
            self._since = now
        left = self._since + settings.deadline_seconds - now
        # Never sooner than the poll interval (Runway's pace holds for retries too), doubling
        # from there with up to 50 % jitter; a Retry-After is honoured, never shortened.
        delay = min(_BACKOFF_CAP, settings.poll_interval * 2**self._failures)
        delay *= random.uniform(1.0, 1.5)
        if retry_after is not None:
            delay = max(delay, retry_after * random.uniform(1.0, 1.2))
        if delay > left:
            raise ProviderRetry(
                f"The upstream is still failing ({reason}) after "
                f"{now - self._since:.0f} s of retries.",
                retry_after=retry_after,
            )
        self._failures += 1
        with self._provider._lock:
            self._provider._counters["backoffs"] += 1
        log.warning(
            "runway service %s: upstream %s; retrying in %.2f s",
            self._provider.service_id,
            reason,
            delay,
        )
        _sleep(delay, self._should_cancel)


# --- helpers ---------------------------------------------------------------------------------


def data_uri(source: bytes) -> str:
    """`source` as a `data:` URI of at most `DATA_URI_MAX` characters: as it is when it is a
    JPEG, PNG or WebP that fits, otherwise re-encoded as JPEG (smaller each try until it fits)."""
    mime = _mime(source)
    if mime and _uri_length(mime, len(source)) <= runway_models.DATA_URI_MAX:
        return f"data:{mime};base64,{base64.b64encode(source).decode('ascii')}"
    try:
        with Image.open(io.BytesIO(source)) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise ProviderError("The source image cannot be read.", code="INVALID_IMAGE") from None
    for _ in range(12):
        for quality in (92, 85, 75):
            buf = io.BytesIO()
            image.save(buf, "JPEG", quality=quality, optimize=True)
            if _uri_length("image/jpeg", buf.tell()) <= runway_models.DATA_URI_MAX:
                encoded = base64.b64encode(buf.getvalue()).decode("ascii")
                return f"data:image/jpeg;base64,{encoded}"
        image = image.resize((max(1, image.width * 3 // 4), max(1, image.height * 3 // 4)))
    raise ProviderError("The source image cannot be made small enough.", code="INVALID_IMAGE")


def _mime(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _uri_length(mime: str, size: int) -> int:
    return len(f"data:{mime};base64,") + 4 * ((size + 2) // 3)


class _NotVideo(Exception):
    pass


def _probe(video: Path, poster: Path) -> tuple[int, int, int, int]:
    """Decode every frame of `video` (an MP4 with a video stream, or _NotVideo); write the
    first as a JPEG `poster`; return width, height, fps, frames."""
    with av.open(str(video)) as container:
        if "mp4" not in container.format.name.split(",") or not container.streams.video:
            raise _NotVideo()
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = 0
        for frame in container.decode(stream):
            if frames == 0:
                frame.to_image().convert("RGB").save(poster, "JPEG", quality=90)
            frames += 1
        if frames == 0:
            raise _NotVideo()
        rate = stream.average_rate or stream.guessed_rate
        fps = round(float(rate)) if rate else 0
        return stream.codec_context.width, stream.codec_context.height, fps, frames


def _host_allowed(host: str, allowed: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    if not host:
        return False
    if not allowed:
        return True
    for pattern in allowed:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def _sleep(seconds: float, should_cancel: Callable[[], bool]) -> None:
    end = time.monotonic() + seconds
    while True:
        if should_cancel():
            raise Cancelled()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, _SLICE))


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait: Runway's `retry-after-ms`, else `Retry-After` (seconds or a date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def _status_of(exc: ImageFetchFailed) -> int | None:
    """The HTTP status `net.fetch` reported in its message ("… answered HTTP 404.")."""
    marker = "answered HTTP "
    text = str(exc)
    if marker in text:
        digits = text.split(marker, 1)[1][:3]
        if digits.isdigit():
            return int(digits)
    return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _safe(value: Any, secret: str) -> str:
    """Upstream text as we may show it: one line, the key cut out, at most 500 characters."""
    if not isinstance(value, str):
        return ""
    if secret:
        value = value.replace(secret, "[key]")
    text = " ".join("".join(c if c.isprintable() else " " for c in value).split())
    return text if len(text) <= 500 else text[:499] + "…"


def _word(value: Any) -> str:
    """An upstream status or code as a log may carry it: letters, digits, '.', '_' only."""
    text = value if isinstance(value, str) else repr(type(value).__name__)
    return "".join(c for c in text[:64] if c.isalnum() or c in "._") or "?"
