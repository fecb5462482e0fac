"""The worker loop: claim a job, render it with a heartbeat, store the result, finish.

A worker runs as a thread inside `stillmotion serve` or in its own `stillmotion worker`
process; both are the same class. While a job renders, a heartbeat thread renews the lease
every third of its length and writes the latest progress; when renewal fails (the job was
cancelled, or this worker stalled and lost it) the render is told to stop between frames.

The provider is the one `ctx.providers` holds for the job's service. A provider with upstream
work (Runway) checkpoints its state on the job (`queue.checkpoint`: only while this worker
holds it) and gets it back on the next attempt; `ProviderRetry` puts the job back in the queue
with the attempt counted; a job cancelled while it rendered has its upstream work cancelled
(`provider.cancel(state)`, best effort).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy import select

from stillmotion import errors
from stillmotion.context import Context
from stillmotion.generations import lifecycle
from stillmotion.generations.models import Generation
from stillmotion.generations.schemas import OPTION_NAMES
from stillmotion.generations.states import Stage, Status
from stillmotion.jobs import queue
from stillmotion.providers.base import (
    Cancelled,
    Provider,
    ProviderError,
    ProviderRetry,
    RenderJob,
)

log = logging.getLogger("stillmotion.worker")


class _Heartbeat(threading.Thread):
    def __init__(self, worker: Worker, gen_id: str, timeout: float) -> None:
        super().__init__(name=f"heartbeat-{gen_id}", daemon=True)
        self.worker = worker
        self.gen_id = gen_id
        self.progress = 0.0
        self.stage = Stage.RENDERING.value
        self.lost = threading.Event()
        self.timed_out = False
        self._halt = threading.Event()
        self._deadline = time.monotonic() + timeout
        self._dirty = threading.Event()

    def report(self, fraction: float, stage: str) -> None:
        self.progress = max(self.progress, min(1.0, fraction))
        if stage != self.stage:
            self.stage = stage
            self._dirty.set()

    def should_stop(self) -> bool:
        """Asked by the render between frames: the job is lost, or its time is up."""
        if not self.timed_out and time.monotonic() > self._deadline:
            self.timed_out = True
            self.lost.set()
        return self.lost.is_set() or self.worker.stopping.is_set()

    def run(self) -> None:
        interval = min(self.worker.ctx.settings.lease_seconds / 3, 1.0)
        while not self._halt.is_set():
            self._beat()
            self.should_stop()
            self._dirty.wait(interval)
            self._dirty.clear()

    def _beat(self) -> None:
        ctx = self.worker.ctx
        try:
            with ctx.db.session(write=True) as session:
                alive = queue.renew(
                    session=session,
                    generation_id=self.gen_id,
                    owner=self.worker.name,
                    lease_seconds=ctx.settings.lease_seconds,
                    progress=self.progress,
                    stage=self.stage,
                )
        except Exception:
            log.exception("heartbeat of %s failed; retrying", self.gen_id)
            return
        if not alive:
            self.lost.set()

    def stop(self) -> None:
        self._halt.set()
        self._dirty.set()
        self.join()


class Worker:
    """Claims and renders jobs until `stop` is set."""

    def __init__(
        self, ctx: Context, *, name: str | None = None, wake: threading.Event | None = None
    ) -> None:
        self.ctx = ctx
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.wake = wake or threading.Event()
        self.stopping = threading.Event()

    def run(self, stop: threading.Event) -> None:
        self.stopping = stop
        log.info("worker %s started", self.name)
        while not stop.is_set():
            try:
                worked = self.run_once()
            except Exception:
                log.exception("worker %s: unexpected error; continuing", self.name)
                worked = False
            if not worked:
                self.wake.wait(self.ctx.settings.poll_interval)
                self.wake.clear()
        log.info("worker %s stopped", self.name)

    def run_once(self) -> bool:
        """Claim and process one job. False when there was nothing to do."""
        ctx = self.ctx
        with ctx.db.session(write=True) as session:
            gen = queue.claim(
                session=session,
                storage=ctx.storage,
                owner=self.name,
                lease_seconds=ctx.settings.lease_seconds,
                max_attempts=ctx.settings.max_attempts,
            )
            if gen is None:
                return False
            fields = self._fields(gen)
            source_key, service_id, attempt = gen.source_key, gen.service, gen.attempts
            state = dict(gen.provider_state or {})
        log.info("worker %s claimed %s (attempt %s)", self.name, gen.id, attempt)
        spec = ctx.catalogue.get(service_id)
        try:
            if spec is None:
                raise LookupError(f"the service {service_id} is no longer offered")
            provider = ctx.providers.get(spec)
        except LookupError as exc:
            self._fail_id(fields["generation_id"], "PROVIDER_UNAVAILABLE", str(exc))
            return True
        # Storage is read after the claim commits: no lock is held during I/O, and a source
        # that cannot be read fails this job (with its refund) instead of wedging the queue.
        try:
            source = ctx.storage.read_bytes(source_key)
        except Exception:
            log.exception("source image of %s unreadable", fields["generation_id"])
            self._fail_id(
                fields["generation_id"],
                "RENDER_FAILED",
                "the stored source image could not be read",
            )
            return True
        self._process(RenderJob(source=source, **fields), provider, state)
        return True

    @staticmethod
    def _fields(gen: Generation) -> dict:
        return {
            "generation_id": gen.id,
            "options": MappingProxyType({name: getattr(gen, name) for name in OPTION_NAMES}),
            "fps": gen.fps,
        }

    def _process(self, job: RenderJob, provider: Provider, state: dict[str, Any]) -> None:
        ctx = self.ctx
        heartbeat = _Heartbeat(self, job.generation_id, ctx.settings.render_timeout_seconds)
        # The provider's latest state, written or not: a task created just before the job was
        # cancelled is cancelled upstream too, though its id could no longer be stored.
        latest: dict[str, Any] = dict(state)

        def checkpoint(new_state: dict[str, Any]) -> None:
            latest.clear()
            latest.update(new_state)
            with ctx.db.session(write=True) as session:
                held = queue.checkpoint(
                    session=session,
                    generation_id=job.generation_id,
                    owner=self.name,
                    state=dict(new_state),
                )
            if not held:
                heartbeat.lost.set()  # the render stops at its next check

        heartbeat.start()
        try:
            with tempfile.TemporaryDirectory(prefix="stillmotion-") as tmp:
                try:
                    output = provider.render(
                        job,
                        workdir=Path(tmp),
                        on_progress=heartbeat.report,
                        should_cancel=heartbeat.should_stop,
                        state=MappingProxyType(state),
                        checkpoint=checkpoint,
                    )
                except Cancelled:
                    if self.stopping.is_set() and not heartbeat.lost.is_set():
                        self._release(job)
                    elif heartbeat.timed_out:
                        self._fail(job, "TIMEOUT", "the render took longer than allowed")
                    elif self._cancelled(job.generation_id):
                        log.info("render of %s stopped: cancelled", job.generation_id)
                        self._cancel_upstream(provider, job, latest)
                    else:
                        log.info("render of %s stopped: lost its lease", job.generation_id)
                    return
                except ProviderRetry as exc:
                    self._retry(job, str(exc))
                    return
                except ProviderError as exc:
                    self._fail(job, exc.code, str(exc))
                    return
                except Exception:
                    log.exception("render of %s failed", job.generation_id)
                    self._fail(job, "RENDER_FAILED", "the render failed unexpectedly")
                    return
                heartbeat.report(heartbeat.progress, Stage.STORING.value)
                # Unique per attempt: a worker that lost its lease and finishes late must never
                # overwrite, or delete, the files of the attempt that completed the job.
                stem = f"outputs/{job.generation_id}-{uuid.uuid4().hex[:8]}"
                video_key = f"{stem}.mp4"
                poster_key = f"{stem}.jpg" if output.poster_path else None
                try:
                    ctx.storage.put_file(video_key, output.video_path)
                    if output.poster_path:
                        ctx.storage.put_file(poster_key, output.poster_path)
                except errors.StorageFull as exc:
                    # Not the job's fault: hand it back (the attempt not counted) and pause,
                    # so the queue waits for space instead of burning attempts and CPU.
                    self._release(job, why="storage is full")
                    self.stopping.wait(min(exc.retry_after, 10))
                    return
        finally:
            heartbeat.stop()
        with ctx.db.session(write=True) as session:
            done = queue.complete(
                session=session,
                storage=ctx.storage,
                generation_id=job.generation_id,
                owner=self.name,
                output_key=video_key,
                poster_key=poster_key,
                frames=output.frames,
                output_bytes=output.bytes,
                width=output.width,
                height=output.height,
            )
        if not done:
            log.info("%s finished but was cancelled meanwhile; discarding", job.generation_id)
            ctx.storage.delete(video_key)
            if poster_key:
                ctx.storage.delete(poster_key)
        else:
            log.info("worker %s completed %s", self.name, job.generation_id)

    def _cancelled(self, generation_id: str) -> bool:
        with self.ctx.db.session() as session:
            status = session.scalar(select(Generation.status).where(Generation.id == generation_id))
        return status == Status.CANCELLED

    @staticmethod
    def _cancel_upstream(provider: Provider, job: RenderJob, state: Mapping[str, Any]) -> None:
        cancel = getattr(provider, "cancel", None)
        if cancel is None or not state:
            return
        try:
            cancel(MappingProxyType(dict(state)))
        except Exception:  # best effort: the job is cancelled and refunded whatever happens
            log.exception("upstream cancel of %s failed", job.generation_id)

    def _retry(self, job: RenderJob, message: str) -> None:
        with self.ctx.db.session(write=True) as session:
            outcome = queue.retry(
                session=session,
                storage=self.ctx.storage,
                generation_id=job.generation_id,
                owner=self.name,
                max_attempts=self.ctx.settings.max_attempts,
                error_message=message,
            )
        if outcome == "queued":
            log.info(
                "%s: the provider asks for another attempt; back in the queue", job.generation_id
            )
        elif outcome == "failed":
            log.warning("generation %s failed: PROVIDER_ERROR, no attempt left", job.generation_id)

    def _release(self, job: RenderJob, *, why: str = "shutting down") -> None:
        with self.ctx.db.session(write=True) as session:
            queue.release(session=session, generation_id=job.generation_id, owner=self.name)
        log.info("%s: %s goes back to the queue", why, job.generation_id)

    def _fail(self, job: RenderJob, code: str, message: str) -> None:
        self._fail_id(job.generation_id, code, message)

    def _fail_id(self, generation_id: str, code: str, message: str) -> None:
        log.warning("generation %s failed: %s %s", generation_id, code, message)
        with self.ctx.db.session(write=True) as session:
            lifecycle.fail_or_cancel(
                session=session,
                storage=self.ctx.storage,
                generation_id=generation_id,
                status=Status.FAILED,
                owner=self.name,
                error_code=code,
                error_message=message,
            )


class WorkerPool:
    """N worker threads sharing one wake-up event (set when a job is submitted here)."""

    def __init__(self, ctx: Context, count: int) -> None:
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.workers = [Worker(ctx, wake=self.wake) for _ in range(count)]
        self.threads = [
            threading.Thread(target=w.run, args=(self.stop_event,), name=f"worker-{i}", daemon=True)
            for i, w in enumerate(self.workers)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def notify(self) -> None:
        self.wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; a render in progress stops at its next frame and its job goes back
        to the queue, so the next process to start picks it up at once."""
        self.stop_event.set()
        self.wake.set()
        for t in self.threads:
            t.join(timeout)
