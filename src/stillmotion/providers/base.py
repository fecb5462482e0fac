"""The interface every renderer implements: the built-in engine, a remote API, a GPU model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class RenderJob:
    """One job to render. `options` holds the generation's options (declared once, in
    `generations.schemas.GenerationOptions`) by their Python names, as JSON values: `version`,
    `aspect_ratio`, `duration`, `prompt`, `motion_intensity`, `seed`, `camera`,
    `motion_brush`, `loop`, and whatever option is added there."""

    generation_id: str
    source: bytes
    options: Mapping[str, Any]
    fps: int = 24


@dataclass(frozen=True)
class RenderOutput:
    video_path: Path
    poster_path: Path | None
    width: int
    height: int
    fps: int
    frames: int
    bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


class ProviderError(Exception):
    """The provider could not render this job. `code` is the job's error code (API.md §6)."""

    def __init__(self, message: str, *, code: str = "PROVIDER_ERROR") -> None:
        super().__init__(message)
        self.code = code


class ProviderRetry(Exception):
    """The upstream could not finish this attempt, but another may: the worker ends the attempt
    and puts the job back in the queue while attempts are left (and fails it, refunded, when
    none are). `retry_after`: seconds before another attempt can help, when the upstream said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(Exception):
    """The render stopped because `should_cancel()` said so."""


Checkpoint = Callable[[dict[str, Any]], None]
"""Writes a provider's new state on the job (only while this worker still holds it)."""


class Provider(Protocol):
    name: str

    def render(
        self,
        job: RenderJob,
        *,
        workdir: Path,
        on_progress: Callable[[float, str], None],
        should_cancel: Callable[[], bool],
        state: Mapping[str, Any] = ...,
        checkpoint: Checkpoint | None = None,
    ) -> RenderOutput:
        """Render `job` into files under `workdir`. Raises `ProviderError`, `ProviderRetry` or
        `Cancelled`.

        `state` is what an earlier attempt of this job checkpointed (empty the first time);
        `checkpoint(new_state)` stores a new one on the job, for the next attempt to resume
        from. A provider with nothing to resume (the built-in engine) ignores both. A provider
        with upstream work may also have `cancel(state)`, called (best effort) when the job
        itself was cancelled while it rendered."""
        ...
