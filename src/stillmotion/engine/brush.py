"""The motion brush (API.md §2): up to 5 painted regions, each with its own motion.

A region is `{mask, horizontal, vertical, proximity, ambient}`. `mask` is a PNG data URI (white =
brushed, scaled to the source) or a polygon of normalized `[x, y]` points (0 … 1 of the source's
width and height). The four numbers are −10 … 10, default 0:

- `horizontal`: positive moves the region's content right, negative left;
- `vertical`: positive moves it up, negative down (screen up, not image rows);
- `proximity`: positive brings it toward the viewer (it grows about its centre), negative away;
- `ambient`: how strongly it stirs in place (smooth noise; the sign only picks the pattern).

At 10 and intensity 1 a region travels 4 % of the image's short side per second, or grows 6 %
per second; ambient sways by 0.6 % of the short side. Motion is integrated over time (constant
flow; growth compounds), mask edges are feathered inwards, and outside every mask the offsets are
exactly 0. With `loop` the travel eases out and back and the sway completes whole cycles, so the
frame after the last is frame 0 again.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from stillmotion import options
from stillmotion.engine import image
from stillmotion.engine.ambient import FPS, Clock, Motion, smooth_noise

__all__ = ["MAX_REGIONS", "BrushField", "BrushRegion", "parse_regions"]

MAX_REGIONS = 5
_KEYS = ("mask", "horizontal", "vertical", "proximity", "ambient")
_PNG_PREFIX = "data:image/png;base64,"
_MAX_MASK_CHARS = 8 * 1024 * 1024  # base64 text of a mask
_MAX_MASK_PIXELS = 40_000_000

_TRAVEL = 0.004 / FPS  # share of the short side per frame, per unit of horizontal/vertical
_GROWTH = 0.006 / FPS  # log-scale growth per frame, per unit of proximity
_SWAY = 0.0006  # share of the short side, per unit of ambient
_SWAY_PERIOD = 2.0 * FPS
_FEATHER = 0.015  # least feather width, share of the short side
_MAX_FEATHER = 0.1  # most feather width, share of the short side


@dataclass(frozen=True, eq=False)
class BrushRegion:
    """One painted region: a `polygon` of normalized points or a `bitmap` (uint8, 255 = brushed)."""

    polygon: tuple[tuple[float, float], ...] | None = None
    bitmap: np.ndarray | None = None
    horizontal: float = 0.0
    vertical: float = 0.0
    proximity: float = 0.0
    ambient: float = 0.0

    def coverage(self, *, height: int, width: int) -> np.ndarray:
        """The mask at the source's size, float32 0 … 1."""
        if self.bitmap is not None:
            scaled = cv2.resize(self.bitmap, (width, height), interpolation=cv2.INTER_LINEAR)
            return scaled.astype(np.float32) / 255.0
        assert self.polygon is not None
        bits = 4  # sub-pixel precision of the polygon's corners
        points = np.array(
            [[x * width * (1 << bits), y * height * (1 << bits)] for x, y in self.polygon],
            dtype=np.float64,
        )
        canvas = np.zeros((height, width), np.uint8)
        cv2.fillPoly(canvas, [np.rint(points).astype(np.int32)], 255, cv2.LINE_AA, shift=bits)
        return canvas.astype(np.float32) / 255.0


def parse_regions(raw: list[dict]) -> list[BrushRegion]:
    """Check and convert the API's `motionBrush` list.

    Raises `ValueError` whose message names the offending region and key, e.g.
    `motionBrush[1].horizontal: 12 is outside -10 … 10`.
    """
    if not isinstance(raw, list | tuple):
        raise ValueError(f"motionBrush: expected a list of regions, got {type(raw).__name__}")
    if len(raw) > MAX_REGIONS:
        raise ValueError(f"motionBrush: {len(raw)} regions; at most {MAX_REGIONS} are allowed")
    return [_parse_region(item, f"motionBrush[{index}]") for index, item in enumerate(raw)]


def _parse_region(item: object, where: str) -> BrushRegion:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object, got {type(item).__name__}")
    unknown = sorted(str(key) for key in item if key not in _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(_KEYS)}")
    if "mask" not in item:
        raise ValueError(f"{where}.mask: required (a PNG data URI or a polygon)")
    numbers = {key: _parse_number(item.get(key, 0), f"{where}.{key}") for key in _KEYS[1:]}
    mask = item["mask"]
    if isinstance(mask, str):
        return BrushRegion(bitmap=_parse_png(mask, f"{where}.mask"), **numbers)
    if isinstance(mask, list | tuple):
        return BrushRegion(polygon=_parse_polygon(mask, f"{where}.mask"), **numbers)
    raise ValueError(
        f"{where}.mask: expected a PNG data URI or a list of [x, y] points, "
        f"got {type(mask).__name__}"
    )


def _parse_number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number -10 … 10, got {value!r}")
    if not math.isfinite(value) or not options.CAMERA_MIN <= value <= options.CAMERA_MAX:
        raise ValueError(
            f"{where}: {value!r} is outside {options.CAMERA_MIN} … {options.CAMERA_MAX}"
        )
    return float(value)


def _parse_png(text: str, where: str) -> np.ndarray:
    if not text.startswith(_PNG_PREFIX):
        raise ValueError(f"{where}: a mask string must be a data URI starting {_PNG_PREFIX!r}")
    payload = text[len(_PNG_PREFIX) :]
    if len(payload) > _MAX_MASK_CHARS:
        raise ValueError(f"{where}: the mask is over {_MAX_MASK_CHARS} characters")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{where}: the mask is not valid base64") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(data))
            if picture.format != "PNG":
                raise ValueError(f"{where}: the mask is {picture.format}, not PNG")
            if picture.width * picture.height > _MAX_MASK_PIXELS:
                raise ValueError(f"{where}: the mask has too many pixels")
            picture.load()
    except ValueError:
        raise
    except Exception as exc:  # Pillow raises many types for garbage input
        raise ValueError(f"{where}: the mask is not a readable PNG") from exc
    # White is brushed; a transparent pixel is not, whatever its colour. A 16-bit gray mask
    # is scaled to 8 bits first (Pillow's own conversion clips it to white).
    if picture.mode in image.WIDE_GRAY:
        picture = image.wide_gray_to_8_bit(picture)
    luminance_alpha = picture.convert("LA")
    gray = np.asarray(luminance_alpha.getchannel("L"), np.float32)
    alpha = np.asarray(luminance_alpha.getchannel("A"), np.float32)
    bitmap = np.rint(gray * alpha / 255.0).astype(np.uint8)
    if not bitmap.any():
        raise ValueError(f"{where}: the mask is empty (white marks the brushed area)")
    return bitmap


def _parse_polygon(points: Sequence[object], where: str) -> tuple[tuple[float, float], ...]:
    if len(points) < 3:
        raise ValueError(f"{where}: a polygon needs at least 3 points, got {len(points)}")
    parsed = []
    for index, point in enumerate(points):
        here = f"{where}[{index}]"
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise ValueError(f"{here}: expected [x, y], got {point!r}")
        x, y = point
        for value in (x, y):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{here}: coordinates must be numbers 0 … 1, got {point!r}")
            if not math.isfinite(value) or not 0 <= value <= 1:
                raise ValueError(f"{here}: {point!r} is outside 0 … 1 (normalized coordinates)")
        parsed.append((float(x), float(y)))
    return tuple(parsed)


class BrushField:
    """Per-frame backward offsets for a set of brushed regions.

    `displacement(i)` gives `(dx, dy)`, float32 `height`x`width`: frame i of `frames` samples the
    source at `s + (dx, dy)(s)`. Frame 0 is all zeros; outside every region all frames are zeros.
    `intensity` scales every motion (the request's motionIntensity; 0 disables).
    """

    def __init__(
        self,
        regions: Sequence[BrushRegion],
        *,
        height: int,
        width: int,
        frames: int,
        loop: bool,
        intensity: float,
    ) -> None:
        self.height, self.width = height, width
        self._motion = Motion(height=height, width=width)
        clock = Clock(frames=frames, loop=loop)
        side = min(height, width)
        scale = max(float(intensity), 0.0)
        # Overlapping regions add their motions. Fields are made only for motions in use.
        flow: list[np.ndarray] = []
        sway: list[np.ndarray] = []
        for index, region in enumerate(regions):
            if scale == 0 or not (
                region.horizontal or region.vertical or region.proximity or region.ambient
            ):
                continue
            # A region sliding far is feathered wider, up to 3/4 of its travel, so its trailing
            # edge stretches gently instead of tearing.
            speed = _TRAVEL * side * scale
            travel = speed * math.hypot(region.horizontal, region.vertical)
            travel *= max(clock.travel(i) for i in range(clock.frames + 1))
            width_px = min(max(0.75 * travel, _FEATHER * side), _MAX_FEATHER * side)
            weight = _feather(region.coverage(height=height, width=width), width_px)
            if not weight.any():
                continue
            if region.horizontal or region.vertical:
                # Constant flow, forward: content moves right for +horizontal, up for +vertical.
                flow = flow or [np.zeros((height, width), np.float32) for _ in range(2)]
                flow[0] += weight * (region.horizontal * speed)
                flow[1] += weight * (-region.vertical * speed)
            if region.proximity:
                self._add_growth(weight, region.proximity * _GROWTH * scale, clock)
            if region.ambient:
                rng = np.random.default_rng([index, 1 if region.ambient > 0 else 0])
                amplitude = abs(region.ambient) * _SWAY * side * scale
                sway = sway or [np.zeros((height, width), np.float32) for _ in range(4)]
                for field in sway:
                    noise = smooth_noise(rng, height=height, width=width, cells=8)
                    field += weight * noise * amplitude
        if flow:
            # The backward offset of a constant forward flow v after t frames is -v t.
            self._motion.add(lambda i: -clock.travel(i), flow[0], flow[1])
        if sway:
            self._motion.add(lambda i: math.sin(clock.phase(i, period=_SWAY_PERIOD)), *sway[:2])
            self._motion.add(
                lambda i: math.cos(clock.phase(i, period=_SWAY_PERIOD)) - 1.0, *sway[2:]
            )

    def _add_growth(self, weight: np.ndarray, rate: float, clock: Clock) -> None:
        """Scale about the region's centroid by e^(rate t): sample at c + (s - c) e^(-rate t)."""
        ys, xs = np.indices(weight.shape, dtype=np.float32)
        total = float(weight.sum())
        centre_x = float((weight * xs).sum() / total)
        centre_y = float((weight * ys).sum() / total)
        self._motion.add(
            lambda i: math.exp(-rate * clock.travel(i)) - 1.0,
            weight * (xs - centre_x),
            weight * (ys - centre_y),
        )

    def displacement(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Backward offsets `(dx, dy)` for frame `i`, float32 HxW."""
        return self._motion.displacement(i)


def _feather(coverage: np.ndarray, width: float) -> np.ndarray:
    """Soften the mask's edge inwards: 0 on and outside the edge, 1 about `width` px inside."""
    inside = coverage >= 0.5
    sigma = max(1.0, width / 2)
    shrink = min(1.0, 4.0 / sigma)  # a wide blur is as good, and far cheaper, on a small copy
    if shrink < 1.0:
        height, full_w = inside.shape
        size = (max(1, round(full_w * shrink)), max(1, round(height * shrink)))
        small = cv2.resize(inside.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma * shrink)
        soft = cv2.resize(small, (full_w, height), interpolation=cv2.INTER_LINEAR)
    else:
        soft = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), sigma)
    ramp = np.clip(2.0 * soft - 1.0, 0.0, 1.0)
    ramp *= inside
    peak = float(ramp.max())
    if 0.0 < peak < 1.0:  # a region thinner than the feather still moves at full speed
        ramp /= peak
    return (ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32)
