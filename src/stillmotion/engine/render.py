"""The render pipeline: framing -> motion plan -> frame renderer -> encoder.

Frames are produced on a worker thread (OpenCV releases the GIL) and handed through a short
queue to the encoder on the calling thread (x264 releases it too), so warping overlaps
encoding and memory does not grow with the duration.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from stillmotion.engine import framing, motion
from stillmotion.engine.encode import Encoder, pack_i420, rgb_to_ycbcr, ycbcr_to_rgb
from stillmotion.engine.errors import EngineError, InvalidImage, RenderCancelled

VERSIONS = ("gen-2", "gen-3", "gen-4")
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
_SIZES = {
    "gen-2": {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960)},
    "gen-3": {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1080, 1080)},
    "gen-4": {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1080, 1080)},
}
_ASPECTS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0}
SUPERSAMPLE = 1.5  # the working image holds this many pixels per output pixel (widest view)
_MAX_WORKING_SIDE = 8192
_SHUTTER = 0.5  # of the frame interval (a 180° shutter)
_BLUR_STEP_PX = 2.0  # one motion-blur sample per this many pixels of travel within the shutter
_MAX_BLUR_SAMPLES = 5
_QUEUE_DEPTH = 4
_RENDER_SHARE = 0.97  # of the progress bar; the rest is the encoder's flush


def output_size(version: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) of the output for a version and aspect ratio (API.md §5)."""
    try:
        return _SIZES[version][aspect_ratio]
    except KeyError:
        raise ValueError(f"unknown version {version!r} or aspect ratio {aspect_ratio!r}") from None


@dataclass(frozen=True)
class RenderSpec:
    """What to render. Fields mirror the API's generation options (API.md §2)."""

    version: str = "gen-3"
    aspect_ratio: str = "16:9"
    duration: int = 5
    fps: int = 24
    prompt: str = ""
    motion_intensity: str = "medium"
    seed: int = 0
    camera: dict | None = None
    motion_brush: list[dict] | None = None
    loop: bool = False
    crf: int = 18
    preset: str = "medium"
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class RenderResult:
    width: int
    height: int
    fps: int
    frames: int
    duration: float
    bytes: int
    codec: str
    pix_fmt: str
    poster_path: Path | None
    plan: dict


def _check_spec(spec: RenderSpec) -> tuple[int, int]:
    if spec.version not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}")
    if spec.aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}")
    if spec.motion_intensity not in motion.INTENSITY:
        raise ValueError("motion_intensity must be low, medium or high")
    if spec.duration <= 0 or spec.fps <= 0:
        raise ValueError("duration and fps must be positive")
    width, height = output_size(spec.version, spec.aspect_ratio)
    if spec.width is not None or spec.height is not None:
        if spec.width is None or spec.height is None:
            raise ValueError("give both width and height, or neither")
        width, height = spec.width, spec.height
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError("width and height must be even and at least 16")
    return width, height


class _Scene:
    """Everything a frame needs: the working image and the fitted camera plan."""

    def __init__(self, image: np.ndarray, spec: RenderSpec, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.frames = round(spec.duration * spec.fps)
        self.duration = float(spec.duration)
        aspect = width / height
        self.aspect = aspect
        smart = spec.version != "gen-2"
        subject = framing.find_subject(image) if smart else None
        self.framing = framing.frame_image(image, aspect=aspect, subject=subject)
        canvas = self.framing.canvas
        ch, cw = canvas.shape[:2]
        box = None
        focus = (0.5, 0.5)
        if self.framing.subject is not None:
            x0, y0, x1, y1 = self.framing.subject
            box = (x0 / cw, y0 / ch, x1 / cw, y1 / ch)
            focus = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            if self.framing.subject_kind != "face":
                # saliency is a hint, not a promise: keep only its core in view
                mx, my = (box[2] - box[0]) / 4, (box[3] - box[1]) / 4
                box = (box[0] + mx, box[1] + my, box[2] - mx, box[3] - my)
        camera = spec.camera if smart else None  # gen-2: no camera control (API.md §5)
        plan = motion.plan_motion(
            prompt=spec.prompt,
            camera=camera,
            intensity=spec.motion_intensity,
            seed=spec.seed,
            loop=spec.loop,
            portrait=self.framing.subject_kind == "face",
            focus=focus,
        )
        self.plan = motion.fit_plan(
            plan, aspect=aspect, duration=self.duration, frames=self.frames, subject=box
        )
        self.motion_blur = smart
        # Working image: resampled once, with a good filter, so that every frame is a mild
        # minification (between 1 and SUPERSAMPLE source px per output px, or 1 for the most
        # zoomed view of a big move). Frames are then cheap bilinear warps; the expensive
        # filter (area when shrinking, Lanczos when enlarging) never runs per frame.
        zooms = [
            motion.camera_at(self.plan, t, duration=self.duration, aspect=aspect).zoom
            for t in np.linspace(0, 1, 49)
        ]
        target_w = width * max(SUPERSAMPLE * min(zooms), max(zooms))
        target_w = min(target_w, _MAX_WORKING_SIDE, _MAX_WORKING_SIDE * cw / ch)
        if abs(cw - target_w) > 0.02 * target_w:
            f = target_w / cw
            shrink = f < 1
            canvas = cv2.resize(
                canvas,
                (max(2, round(cw * f)), max(2, round(ch * f))),
                interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4,
            )
        # Even sides, so the half-size chroma source lines up with the luma exactly.
        rgb = canvas[: canvas.shape[0] // 2 * 2, : canvas.shape[1] // 2 * 2]
        self.source = np.ascontiguousarray(rgb)
        # Frames are warped directly in Y'CbCr: the conversion happens once, here, and the
        # chroma planes are warped at half size, which halves the per-frame work.
        self.src_y, self.src_c = rgb_to_ycbcr(self.source)
        self.src_h, self.src_w = self.src_y.shape

    def time_of(self, i: float) -> float:
        n = self.frames
        if self.plan.loop:
            return i / n
        return i / max(n - 1, 1)

    def matrix(self, t: float) -> np.ndarray:
        state = motion.camera_at(self.plan, t, duration=self.duration, aspect=self.aspect)
        return motion.view_matrix(
            state,
            canvas_w=self.src_w,
            canvas_h=self.src_h,
            out_w=self.width,
            out_h=self.height,
        )

    def _warp(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        border = cv2.BORDER_REFLECT101
        y = cv2.warpAffine(self.src_y, m, (self.width, self.height), flags=flags, borderMode=border)
        # Chroma pixel c sits at luma 2c + 0.5 in both the source and the output.
        a = m[:, :2]
        tc = (a @ np.array([0.5, 0.5]) + m[:, 2] - 0.5) / 2
        mc = np.hstack([a, tc[:, None]])
        c = cv2.warpAffine(
            self.src_c, mc, (self.width // 2, self.height // 2), flags=flags, borderMode=border
        )
        return y, c

    def _travel(self, m0: np.ndarray, m1: np.ndarray) -> float:
        """Largest movement, in output pixels, of a frame corner between two views."""
        corners = np.array(
            [[0, 0, 1], [self.width, 0, 1], [0, self.height, 1], [self.width, self.height, 1]],
            float,
        ).T
        a, b = m0 @ corners, m1 @ corners
        scale = math.sqrt(abs(np.linalg.det(m0[:, :2])))
        return float(np.abs(a - b).max() / max(scale, 1e-9))

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame `i` as Y' (HxW) and half-size Cb/Cr planes, motion-blurred when it moves."""
        dt = self.time_of(1) - self.time_of(0)
        t = self.time_of(i)
        m = self.matrix(t)
        if not self.motion_blur:
            return self._warp(m)
        half = 0.5 * _SHUTTER * dt
        m_a, m_b = self.matrix(t - half), self.matrix(t + half)
        n = min(_MAX_BLUR_SAMPLES, max(1, math.ceil(self._travel(m_a, m_b) / _BLUR_STEP_PX)))
        if n == 1:
            return self._warp(m)
        acc_y = np.zeros((self.height, self.width), np.float32)
        acc_c = np.zeros((self.height // 2, self.width // 2, 2), np.float32)
        for k in range(n):
            tk = t - half + (2 * half) * (k + 0.5) / n
            y, c = self._warp(self.matrix(tk))
            cv2.add(acc_y, y, dst=acc_y, dtype=cv2.CV_32F)
            cv2.add(acc_c, c, dst=acc_c, dtype=cv2.CV_32F)
        return (
            cv2.convertScaleAbs(acc_y, alpha=1.0 / n),
            cv2.convertScaleAbs(acc_c, alpha=1.0 / n),
        )


def render(
    image: Image.Image,
    spec: RenderSpec,
    output_path: Path,
    *,
    poster_path: Path | None = None,
    on_progress: Callable[[float, str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> RenderResult:
    """Render `image` as a clip at `output_path` (MP4) and optionally a JPEG poster.

    `on_progress(fraction, stage)` is called after every frame with a non-decreasing fraction
    (stage "rendering"), then with "encoding" while the encoder flushes. `should_cancel()` is
    checked between frames; when it returns True, `RenderCancelled` is raised and no output
    file is left behind. Invalid specs raise ValueError.
    """
    width, height = _check_spec(spec)
    if not isinstance(image, Image.Image):
        raise InvalidImage("expected a PIL image")
    rgb = np.asarray(image.convert("RGB"))
    scene = _Scene(rgb, spec, width, height)
    output_path = Path(output_path)
    tmp = output_path.with_name(f".{output_path.name}.{os.getpid()}.part")
    poster_tmp = None
    if poster_path is not None:
        poster_path = Path(poster_path)
        poster_tmp = poster_path.with_name(f".{poster_path.name}.{os.getpid()}.part")
    total = scene.frames
    q: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
    fraction = 0.0
    stop = threading.Event()

    def produce() -> None:
        try:
            for i in range(total):
                if stop.is_set():
                    return
                y, c = scene.frame(i)
                if i == 0 and poster_tmp is not None:
                    poster = ycbcr_to_rgb(y, c[..., 0], c[..., 1])
                    Image.fromarray(poster).save(poster_tmp, format="JPEG", quality=90)
                planes = pack_i420(y, c)
                while not stop.is_set():
                    try:
                        q.put(planes, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    worker = threading.Thread(target=produce, name="stillmotion-render", daemon=True)
    done = False
    try:
        encoder = Encoder(
            tmp, width=width, height=height, fps=spec.fps, crf=spec.crf, preset=spec.preset
        )
        try:
            worker.start()
            for i in range(total):
                if should_cancel is not None and should_cancel():
                    raise RenderCancelled("render cancelled")
                item = q.get()
                if isinstance(item, BaseException):
                    raise EngineError(f"frame {i} failed: {item}") from item
                encoder.write_i420(item)
                fraction = _RENDER_SHARE * (i + 1) / total
                if on_progress is not None:
                    on_progress(fraction, "rendering")
            if should_cancel is not None and should_cancel():
                raise RenderCancelled("render cancelled")
            if on_progress is not None:
                on_progress(fraction, "encoding")
        except BaseException:
            encoder.abort()
            raise
        encoder.close()
        if poster_tmp is not None:
            os.replace(poster_tmp, poster_path)
        os.replace(tmp, output_path)
        done = True
    finally:
        stop.set()
        if worker.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:
                    q.get_nowait()
            worker.join(timeout=5)
        if not done:
            for p in (tmp, poster_tmp):
                if p is not None:
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
    if on_progress is not None:
        on_progress(1.0, "encoding")
    plan = scene.plan.as_dict()
    plan["framing"] = scene.framing.as_dict()
    plan["version"] = spec.version
    return RenderResult(
        width=width,
        height=height,
        fps=spec.fps,
        frames=total,
        duration=total / spec.fps,
        bytes=output_path.stat().st_size,
        codec="h264",
        pix_fmt="yuv420p",
        poster_path=poster_path,
        plan=plan,
    )
