"""The render pipeline: framing -> motion plan -> frame renderer -> encoder.

Frames are produced on a worker thread (OpenCV releases the GIL) and handed through a short
queue to the encoder on the calling thread (x264 releases it too), so warping overlaps
encoding and memory does not grow with the duration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from stillmotion import options
from stillmotion.engine import framing, motion
from stillmotion.engine.encode import (
    Encoder,
    i420_planes,
    rgb_to_ycbcr,
    rgb_to_ycc444,
    ycbcr_to_rgb,
)
from stillmotion.engine.errors import EngineError, InvalidImage, RenderCancelled

# The API's option values and ranges are declared once, in the dependency-free
# `stillmotion.options`; the engine renders exactly those.
VERSIONS = options.VERSIONS
ASPECT_RATIOS = options.ASPECT_RATIOS
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
_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
            "veryslow", "placebo")  # fmt: skip
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
    if spec.camera is not None:
        motion.validate_camera(spec.camera)
    if not 0 <= spec.crf <= 51:
        raise ValueError("crf must be 0 … 51")
    if spec.preset not in _PRESETS:
        raise ValueError(f"preset must be one of {', '.join(_PRESETS)}")
    return width, height


def _brush_regions(spec: RenderSpec) -> list:
    """Parsed motion-brush regions (ValueError for bad ones); [] when none or not available."""
    if not spec.motion_brush:
        return []
    try:
        from stillmotion.engine import brush
    except ImportError:  # pragma: no cover - the gen-4 modules are part of the package
        return []
    if len(spec.motion_brush) > options.MOTION_BRUSH_MAX:
        raise ValueError(f"motionBrush takes at most {options.MOTION_BRUSH_MAX} regions")
    return brush.parse_regions(spec.motion_brush)


class _Scene:
    """Everything a frame needs: the working image and the fitted camera plan."""

    def __init__(self, image: np.ndarray, spec: RenderSpec, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.frames = round(spec.duration * spec.fps)
        self.duration = float(spec.duration)
        aspect = width / height
        self.aspect = aspect
        smart = spec.version != "gen-2"
        # A source far larger than the output is shrunk first (keeping 4x headroom for zooms):
        # framing and resampling then cost what the output needs, not what the camera shot.
        h0, w0 = image.shape[:2]
        f = 4 * max(width / w0, height / h0)
        self.prescale = min(f, 1.0)
        if f < 1:
            size = (max(2, round(w0 * f)), max(2, round(h0 * f)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
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
        self._unfitted = dataclasses.replace(plan)  # gen-4 refits it once its layers are known
        self._fit_args = dict(
            aspect=aspect, duration=self.duration, frames=self.frames, subject=box
        )
        self.plan = motion.fit_plan(plan, **self._fit_args)
        self.motion_blur = smart
        # gen-4 (and a motion brush on gen-3) render through per-pixel remaps: parallax layers,
        # brush and ambient offsets. Everything else is a plain affine warp.
        self.regions = _brush_regions(spec) if smart else []
        self.layered = spec.version == "gen-4"
        self.remapped = self.layered or bool(self.regions)
        # Working image: resampled once, with a good filter, so that no frame magnifies (a
        # bilinear warp would blur) and the widest view minifies by at most SUPERSAMPLE.
        # Frames are then cheap bilinear warps; the expensive filter (area when shrinking,
        # Lanczos when enlarging) never runs per frame. A source already in range is kept.
        zooms = [
            motion.camera_at(self.plan, t, duration=self.duration, aspect=aspect).zoom
            for t in np.linspace(0, 1, 49)
        ]
        supersample = 1.0 if self.remapped else SUPERSAMPLE  # remaps are cubic, and costly
        need_w = width * max(zooms)
        cap_w = max(need_w, width * supersample * min(zooms))
        limit = min(_MAX_WORKING_SIDE, _MAX_WORKING_SIDE * cw / ch)
        target_w = min(cap_w if cw > cap_w else need_w if cw < need_w else cw, limit)
        size = (cw // 2 * 2, ch // 2 * 2)  # even sides: chroma lines up with luma exactly
        if abs(cw - target_w) > 0.01 * target_w:
            f = target_w / cw
            size = (max(2, round(cw * f / 2) * 2), max(2, round(ch * f / 2) * 2))
        resample = cv2.INTER_AREA if size[0] < cw else cv2.INTER_LANCZOS4
        kept = size == (cw // 2 * 2, ch // 2 * 2)
        self.src_w, self.src_h = size
        if self.remapped:
            self.source = (
                np.ascontiguousarray(canvas[: size[1], : size[0]])
                if kept
                else cv2.resize(canvas, size, interpolation=resample)
            )
        elif kept:
            # Frames are warped directly in Y'CbCr: the conversion happens once, here, and the
            # chroma planes are warped at half size, which halves the per-frame work.
            self.src_y, chroma = rgb_to_ycbcr(np.ascontiguousarray(canvas[: size[1], : size[0]]))
            self.src_cb, self.src_cr = (np.ascontiguousarray(p) for p in cv2.split(chroma))
        else:
            # Resample the planes rather than the RGB (half the work): Y' at full size, Cb/Cr
            # straight to half size.
            y, cb, cr = cv2.split(rgb_to_ycc444(canvas))
            half = (size[0] // 2, size[1] // 2)
            self.src_y = cv2.resize(y, size, interpolation=resample)
            self.src_cb = cv2.resize(cb, half, interpolation=resample)
            self.src_cr = cv2.resize(cr, half, interpolation=resample)
        self.extras: dict = {}
        if not smart and spec.camera is not None:
            self.extras["cameraIgnored"] = "gen-2 has no camera control; the prompt steers it"
        if self.remapped:
            self._setup_remap(spec, canvas_box=self.framing.subject, canvas_size=(cw, ch))
        self.extras["motionBlurSamples"] = max(
            len(self._blur_samples(self.time_of(i))) for i in range(self.frames)
        )

    def _setup_remap(self, spec: RenderSpec, *, canvas_box, canvas_size) -> None:
        """Layers, brush and ambient fields for the remap path (gen-4, or a brushed gen-3)."""
        self.motion_blur = False
        intensity = motion.INTENSITY[spec.motion_intensity]
        self.fields: list = []
        self.layers = None
        self.strength = 1.0
        # Output pixel grid, for building the camera's backward maps each frame.
        self._u, self._v = (
            g.astype(np.float32) for g in np.meshgrid(np.arange(self.width), np.arange(self.height))
        )
        if self.regions:
            from stillmotion.engine import brush

            self.fields.append(
                brush.BrushField(
                    self.regions,
                    height=self.src_h,
                    width=self.src_w,
                    frames=self.frames,
                    loop=spec.loop,
                    intensity=intensity,
                )
            )
            self.extras["brushRegions"] = len(self.regions)
        if not self.layered:
            return
        try:
            from stillmotion.engine import ambient, depth, parallax
        except ImportError:  # pragma: no cover - gen-4 falls back to the gen-3 look
            self.extras["fallback"] = "gen-3"
            return
        self._parallax = parallax
        kinds = ambient.ambient_kinds(spec.prompt)
        if kinds:
            self.fields.append(
                ambient.AmbientField(
                    self.source,
                    kinds=kinds,
                    frames=self.frames,
                    loop=spec.loop,
                    seed=spec.seed,
                    intensity=intensity,
                )
            )
            self.extras["ambient"] = sorted(kinds)
        box = None
        if canvas_box is not None:
            fx, fy = self.src_w / canvas_size[0], self.src_h / canvas_size[1]
            x0, y0, x1, y1 = canvas_box
            if self.framing.subject_kind == "face":
                # a face box seeds a person: widen it and take in the shoulders and chest
                w, h = x1 - x0, y1 - y0
                x0, x1, y0, y1 = x0 - 0.9 * w, x1 + 0.9 * w, y0 - 0.4 * h, y1 + 3.0 * h
            x0, y0 = max(0.0, x0 * fx), max(0.0, y0 * fy)
            x1, y1 = min(self.src_w, x1 * fx), min(self.src_h, y1 * fy)
            if x1 - x0 >= 8 and y1 - y0 >= 8:
                box = (round(x0), round(y0), round(x1 - x0), round(y1 - y0))
        self.layers = depth.estimate_layers(self.source, subject_box=box, seed=spec.seed)
        self.extras["parallax"] = True
        share = 1.0 + parallax.lag_floor(self.layers, self.source)
        if share < 1.0 and self.plan.camera["zoom"] > 0 and not self.plan.dolly_zoom:
            # Pushing in, the background grows less than the view shrinks: its view is wider
            # than the camera's. Keep the zoom target far enough from the edges for it too.
            self.plan = motion.fit_plan(
                dataclasses.replace(self._unfitted), layer_share=share, **self._fit_args
            )
        # A dolly zoom keeps the subject's size (the maps do not zoom) while the background's
        # perspective changes (the parallax zoom does); the overscan covers how far it reaches.
        self.map_plan = self.plan
        if self.plan.dolly_zoom:
            self.map_plan = dataclasses.replace(
                self.plan,
                camera={**self.plan.camera, "zoom": 0.0},
                overscan=max(self.plan.overscan, self._dolly_zoom(1.0)),
            )
        self.strength = self._fit_strength()
        if self.strength < 1.0:
            self.extras["parallaxStrength"] = round(self.strength, 3)

    def _fit_strength(self) -> float:
        """The strongest parallax (0 … 1, one value for the clip, so the motion stays smooth)
        with which every frame's background samples inside the picture: past its edge there is
        nothing true to show (a reflection is a mirrored copy, a clamp a smear)."""
        w, h = self.width, self.height
        pixels = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float)
        middle = np.array([(w - 1) / 2, (h - 1) / 2, 1.0])
        views = []
        for i in range(self.frames):
            m, shift, zoom = self._camera_terms(i)
            views.append(((pixels @ m.T), tuple(m @ middle), shift, zoom))

        def fits(strength: float) -> bool:
            for corners, centre, shift, zoom in views:
                x0, y0, x1, y1 = self._parallax.background_reach(
                    self.layers,
                    self.source,
                    corners,
                    centre=centre,
                    shift=shift,
                    zoom=zoom,
                    strength=strength,
                )
                # the camera's own view is fitted to the picture (up to rounding, which the
                # composite trims); only what the background adds to it is planned here
                low = np.minimum(corners.min(axis=0), 0.0) - 0.01
                high = np.maximum(corners.max(axis=0), (self.src_w - 1, self.src_h - 1)) + 0.01
                if x0 < low[0] or y0 < low[1] or x1 > high[0] or y1 > high[1]:
                    return False
            return True

        if fits(1.0):
            return 1.0
        lo, hi = 0.0, 1.0
        for _ in range(10):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    def _dolly_zoom(self, t: float) -> float:
        e = motion.ease(t, loop=self.plan.loop)
        return math.exp(motion.ZOOM_PER_UNIT * self.plan.camera["zoom"] * self.plan.amplitude * e)

    def _camera_terms(self, i: int) -> tuple[np.ndarray, tuple[float, float], float]:
        """Frame `i`'s view matrix (output pixels to working-image pixels) and, for parallax,
        the camera's translation since frame 0 in working-image pixels and its zoom relative
        to frame 0."""
        t = self.time_of(i)
        plan = getattr(self, "map_plan", self.plan)
        state = motion.camera_at(plan, t, duration=self.duration, aspect=self.aspect)
        m = motion.view_matrix(
            state, canvas_w=self.src_w, canvas_h=self.src_h, out_w=self.width, out_h=self.height
        )
        start = motion.camera_at(plan, 0.0, duration=self.duration, aspect=self.aspect)
        shift = (
            (state.truck[0] - start.truck[0]) * self.src_w,
            (state.truck[1] - start.truck[1]) * self.src_h,
        )
        zoom = state.zoom / start.zoom
        if self.plan.dolly_zoom:
            zoom = self._dolly_zoom(t)
        return m, shift, zoom

    def _frame_maps(self, i: int) -> tuple:
        """The camera's backward maps for frame `i`, the fields' offsets, and (layers only) the
        camera's translation since frame 0 in source pixels and its zoom relative to frame 0."""
        m, shift, zoom = self._camera_terms(i)
        map_x = cv2.addWeighted(self._u, m[0, 0], self._v, m[0, 1], m[0, 2])
        map_y = cv2.addWeighted(self._u, m[1, 0], self._v, m[1, 1], m[1, 2])
        offsets = None
        for f in self.fields:
            dx, dy = f.displacement(i)
            offsets = (dx, dy) if offsets is None else (offsets[0] + dx, offsets[1] + dy)
        if self.layers is None:
            shift, zoom = (0.0, 0.0), 1.0
        return map_x, map_y, offsets, shift, zoom

    def sampling_maps(self, i: int) -> list:
        """Where frame `i` samples the working image `self.source`: one `parallax.LayerMaps`
        per layer drawn (the remap path only), in working-image pixels."""
        map_x, map_y, offsets, shift, zoom = self._frame_maps(i)
        if self.layers is not None:
            return self._parallax.sampling_maps(
                self.layers,
                self.source,
                map_x,
                map_y,
                shift=shift,
                zoom=zoom,
                strength=self.strength,
                offsets=offsets,
            )
        from stillmotion.engine.parallax import LayerMaps

        return [LayerMaps("image", *self._offset_maps(map_x, map_y, offsets))]

    def _offset_maps(self, map_x, map_y, offsets) -> tuple[np.ndarray, np.ndarray]:
        if offsets is not None:
            border = cv2.BORDER_REPLICATE
            extra_x = cv2.remap(offsets[0], map_x, map_y, cv2.INTER_LINEAR, borderMode=border)
            extra_y = cv2.remap(offsets[1], map_x, map_y, cv2.INTER_LINEAR, borderMode=border)
            map_x += extra_x
            map_y += extra_y
        return map_x, map_y

    def frame_rgb(self, i: int) -> np.ndarray:
        """Frame `i` through the remap path, as RGB."""
        map_x, map_y, offsets, shift, zoom = self._frame_maps(i)
        if self.layers is not None:
            return self._parallax.composite(
                self.layers,
                self.source,
                map_x,
                map_y,
                shift=shift,
                zoom=zoom,
                strength=self.strength,
                offsets=offsets,
            )
        map_x, map_y = self._offset_maps(map_x, map_y, offsets)
        return cv2.remap(
            self.source, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
        )

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

    def _warp(self, m: np.ndarray, out: np.ndarray) -> None:
        """Warp the source planes through `m` into the I420 buffer `out`."""
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        border = cv2.BORDER_REFLECT101
        y, cb, cr = i420_planes(out)
        size, half = (self.width, self.height), (self.width // 2, self.height // 2)
        cv2.warpAffine(self.src_y, m, size, dst=y, flags=flags, borderMode=border)
        # Chroma pixel c sits at luma 2c + 0.5 in both the source and the output.
        a = m[:, :2]
        tc = (a @ np.array([0.5, 0.5]) + m[:, 2] - 0.5) / 2
        mc = np.hstack([a, tc[:, None]])
        cv2.warpAffine(self.src_cb, mc, half, dst=cb, flags=flags, borderMode=border)
        cv2.warpAffine(self.src_cr, mc, half, dst=cr, flags=flags, borderMode=border)

    def _travel(self, m0: np.ndarray, m1: np.ndarray) -> float:
        """Largest movement, in output pixels, of a frame corner between two views."""
        corners = np.array(
            [[0, 0, 1], [self.width, 0, 1], [0, self.height, 1], [self.width, self.height, 1]],
            float,
        ).T
        a, b = m0 @ corners, m1 @ corners
        scale = math.sqrt(abs(np.linalg.det(m0[:, :2])))
        return float(np.abs(a - b).max() / max(scale, 1e-9))

    def frame(self, i: int) -> np.ndarray:
        """Frame `i` as an I420 buffer ((H*3/2) x W), motion-blurred when it moves fast."""
        out = np.empty((self.height * 3 // 2, self.width), np.uint8)
        if self.remapped:
            y, cb, cr = i420_planes(out)
            ycc, chroma = rgb_to_ycbcr(self.frame_rgb(i))
            y[:] = ycc
            cv2.split(chroma, [cb, cr])
            return out
        t = self.time_of(i)
        samples = self._blur_samples(t)
        if len(samples) == 1:
            self._warp(self.matrix(samples[0]), out)
            return out
        acc = np.zeros(out.shape, np.float32)
        for tk in samples:
            self._warp(self.matrix(tk), out)
            cv2.add(acc, out, dst=acc, dtype=cv2.CV_32F)
        return cv2.convertScaleAbs(acc, alpha=1.0 / len(samples))

    def _blur_samples(self, t: float) -> list[float]:
        """Times to average for the frame at `t`: one, or several across a 180° shutter when
        the picture travels far enough within it for the blur to show."""
        if not self.motion_blur:
            return [t]
        half = 0.5 * _SHUTTER * (self.time_of(1) - self.time_of(0))
        travel = self._travel(self.matrix(t - half), self.matrix(t + half))
        n = min(_MAX_BLUR_SAMPLES, max(1, math.ceil(travel / _BLUR_STEP_PX)))
        if n == 1:
            return [t]
        return [t - half + (2 * half) * (k + 0.5) / n for k in range(n)]


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
    token = uuid.uuid4().hex[:12]  # renders may run side by side in one process
    tmp = output_path.with_name(f".{output_path.name}.{token}.part")
    poster_tmp = None
    if poster_path is not None:
        poster_path = Path(poster_path)
        poster_tmp = poster_path.with_name(f".{poster_path.name}.{token}.part")
    total = scene.frames
    q: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
    fraction = 0.0
    stop = threading.Event()

    def produce() -> None:
        try:
            for i in range(total):
                if stop.is_set():
                    return
                planes = scene.frame(i)
                if i == 0 and poster_tmp is not None:
                    poster = ycbcr_to_rgb(*i420_planes(planes))
                    Image.fromarray(poster).save(poster_tmp, format="JPEG", quality=90)
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
        except av.FFmpegError as exc:
            raise EngineError(f"encoding failed: {exc}") from exc
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
    if scene.prescale < 1:  # report the crop in the caller's pixels
        plan["framing"]["crop"] = [round(v / scene.prescale) for v in plan["framing"]["crop"]]
    plan["version"] = spec.version
    plan.update(scene.extras)
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
