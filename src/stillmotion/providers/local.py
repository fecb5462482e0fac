"""The built-in engine: CPU only, no model weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stillmotion import engine
from stillmotion.providers.base import (
    Cancelled,
    Checkpoint,
    ProviderError,
    RenderJob,
    RenderOutput,
)


class LocalProvider:
    name = "local"

    def __init__(self, *, crf: int = 18, preset: str = "medium") -> None:
        self.crf = crf
        self.preset = preset

    def render(
        self,
        job: RenderJob,
        *,
        workdir: Path,
        on_progress: Callable[[float, str], None],
        should_cancel: Callable[[], bool],
        state: Mapping[str, Any] | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> RenderOutput:
        # `state` and `checkpoint`: a local render has nothing to resume; it starts over.
        try:
            image = engine.open_image(job.source)
        except engine.InvalidImage as exc:
            raise ProviderError(str(exc), code="INVALID_IMAGE") from None
        # The engine's spec takes every option by its name (tests/unit/test_options.py).
        spec = engine.RenderSpec(**job.options, fps=job.fps, crf=self.crf, preset=self.preset)
        video = workdir / f"{job.generation_id}.mp4"
        poster = workdir / f"{job.generation_id}.jpg"
        try:
            result = engine.render(
                image,
                spec,
                video,
                poster_path=poster,
                on_progress=on_progress,
                should_cancel=should_cancel,
            )
        except engine.RenderCancelled:
            raise Cancelled() from None
        except (engine.EngineError, ValueError) as exc:
            # ValueError: a spec the engine refuses that intake let through (intake checks the
            # same rules, so this is a defect to report, not a user's mistake to blame).
            raise ProviderError(str(exc), code="RENDER_FAILED") from None
        return RenderOutput(
            video_path=video,
            poster_path=result.poster_path,
            width=result.width,
            height=result.height,
            fps=result.fps,
            frames=result.frames,
            bytes=result.bytes,
            extra={"plan": result.plan},
        )
