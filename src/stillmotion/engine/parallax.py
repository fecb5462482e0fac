"""2.5D parallax: nearer layers follow the camera more than farther ones.

The camera's backward maps move a single plane. `composite` bends them per pixel by depth: the
subject (the reference plane) moves exactly with the camera, the background lags behind it the
farther away it is, for translation (it slides less) and for zoom (it grows less). The subject is
a rigid card drawn over the clean plate through its feathered matte, so whatever it uncovers shows
the inpainted background, never a hole.

Everything is one `cv2.remap` per layer from composed maps: depth and brush offsets are sampled
at the camera's positions and added to its maps, so no image is warped twice.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

import cv2
import numpy as np

from stillmotion.engine.depth import Layers, _push_pull

__all__ = ["composite"]

# At strength 1 a layer lags the reference plane by this share of the camera move per unit of
# depth: the sky (depth ~0.1) under a subject at ~0.85 moves at about 40 % of the camera's speed.
_GAIN = 0.8


@dataclass(frozen=True)
class _Plan:
    """What `composite` derives once per `Layers`: the plate's depth and the subject's colours."""

    background_depth: np.ndarray  # HxW, the depth of the plate, filled in under the subject
    reference: float  # the depth that moves exactly with the camera
    foreground: np.ndarray | None  # HxWx3 int16, subject colours unmixed from the plate
    image_id: int  # the image they were unmixed from


_plans: weakref.WeakKeyDictionary[Layers, _Plan] = weakref.WeakKeyDictionary()
_plans_lock = threading.Lock()


def composite(
    layers: Layers,
    image: np.ndarray,
    map_x: np.ndarray,
    map_y: np.ndarray,
    *,
    shift: tuple[float, float],
    zoom: float,
    strength: float,
    offsets: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """One output frame (uint8 RGB H'xW'x3) of `image` seen through the camera, with parallax.

    `map_x`/`map_y` are the camera's backward maps (H'xW', source pixel coordinates, as for
    `cv2.remap`); `shift` is the camera's translation since frame 0 in source pixels and `zoom`
    its scale relative to frame 0 (> 1 is closer); `strength` 0 … 1 scales the parallax.
    `offsets` are extra backward offsets (source HxW, as from a brush or ambient field): the
    frame samples the source at `s + offsets(s)`. With no camera move and no offsets the frame is
    exactly the cubic `cv2.remap(image, map_x, map_y)`; uncovered areas show `layers.background`.
    """
    map_x = np.asarray(map_x, np.float32)
    map_y = np.asarray(map_y, np.float32)
    plan = _plan_for(layers, image)
    centre_x, centre_y = _centre(map_x), _centre(map_y)  # where the camera looks

    if offsets is not None:
        if offsets[0].shape != image.shape[:2] or offsets[1].shape != image.shape[:2]:
            raise ValueError(
                f"offsets are {offsets[0].shape} and {offsets[1].shape}; "
                f"they must be the source's size {image.shape[:2]}"
            )
        extra_x = _sample(offsets[0], map_x, map_y)
        extra_y = _sample(offsets[1], map_x, map_y)
        map_x, map_y = map_x + extra_x, map_y + extra_y

    moving = strength > 0 and (shift[0] != 0 or shift[1] != 0 or zoom != 1)
    if not moving or plan.reference <= float(plan.background_depth.min()):
        return _remap(image, map_x, map_y)

    # How far each background pixel lags: g = 0 on the reference plane, down to -_GAIN*strength
    # at depth 0. A layer at g moves by (1 + g) of the camera's translation and zooms by z^(1+g).
    depth = _sample(plan.background_depth, map_x, map_y)
    lag = np.subtract(plan.reference, depth, out=depth)
    np.maximum(lag, 0.0, out=lag)
    lag *= -_GAIN * min(max(float(strength), 0.0), 1.0)
    grow = np.exp(lag * -math.log(max(float(zoom), 1e-6))) - 1.0
    back_x = map_x + (map_x - centre_x) * grow + lag * float(shift[0])
    back_y = map_y + (map_y - centre_y) * grow + lag * float(shift[1])
    background = _remap(layers.background, back_x, back_y)
    if plan.foreground is None:
        return background

    alpha = cv2.remap(
        layers.subject_alpha,
        map_x,
        map_y,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    if not alpha.any():
        return background
    subject = _remap(plan.foreground, map_x, map_y)
    # out = B + a (F - B), in float, rounded once (cv2: a third of numpy's time here).
    out = cv2.subtract(subject, background, dtype=cv2.CV_32F)
    cv2.multiply(out, cv2.merge([alpha, alpha, alpha]), dst=out)
    return cv2.add(out, background, dtype=cv2.CV_8U)


def _remap(source: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(source, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)


def _sample(field: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    field = np.asarray(field, np.float32)
    return cv2.remap(field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _centre(grid: np.ndarray) -> float:
    """The value at the middle of a map (its centre may fall between pixels)."""
    height, width = grid.shape
    rows = slice((height - 1) // 2, height // 2 + 1)
    cols = slice((width - 1) // 2, width // 2 + 1)
    return float(grid[rows, cols].mean())


def _plan_for(layers: Layers, image: np.ndarray) -> _Plan:
    with _plans_lock:
        plan = _plans.get(layers)
    if plan is None or plan.image_id != id(image):
        plan = _make_plan(layers, image)
        with _plans_lock:
            _plans[layers] = plan
    return plan


def _make_plan(layers: Layers, image: np.ndarray) -> _Plan:
    if image.shape[:2] != layers.depth.shape or layers.subject_alpha.shape != layers.depth.shape:
        raise ValueError(
            f"layers are {layers.depth.shape} but the image is {image.shape[:2]}: "
            "estimate the layers from the image being warped"
        )
    alpha = layers.subject_alpha
    depth = layers.depth.astype(np.float32)
    inside = alpha > 0
    if not inside.any():
        # No subject: the nearest depth is the reference, everything else lags behind it.
        return _Plan(
            background_depth=depth,
            reference=float(depth.max()),
            foreground=None,
            image_id=id(image),
        )
    # The subject stands at its own depth; behind it the plate continues the depth around it.
    reference = float((depth * alpha).sum() / alpha.sum())
    background_depth = _push_pull(depth, (~inside).astype(np.float32))
    # Unmix the subject's colours so that B + a (F - B) gives back the photograph: F = B +
    # (I - B) / a. The plate of `estimate_layers` equals the photograph where a is small, which
    # keeps F within about ±5 x 255; the clip guards against other plates.
    plate = layers.background.astype(np.float32)
    safe = np.where(inside, alpha, 1.0)[..., None]
    foreground = plate + (image.astype(np.float32) - plate) / safe
    foreground = np.clip(np.rint(foreground), -1536, 1791).astype(np.int16)
    return _Plan(
        background_depth=background_depth,
        reference=reference,
        foreground=foreground,
        image_id=id(image),
    )
