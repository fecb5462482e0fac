"""2.5D parallax: nearer layers follow the camera more than farther ones.

The camera's backward maps move a single plane. `composite` bends them per pixel by depth: the
subject (the reference plane) moves exactly with the camera, the background lags behind it the
farther away it is, for translation (it slides less) and for zoom (it grows less). Where the
subject's outline follows an edge of the photograph (`depth.boundary_confidence`), the subject is
a rigid card drawn over the clean plate through its feathered matte, so whatever it uncovers shows
the inpainted background, never a hole. Where the outline is a guess (it runs through sky, or cuts
a structure that carries on past it) nothing is cut: the photograph itself is displaced by a
smooth depth field that rises to the subject's depth around it, so it bends by well under a pixel
per pixel instead of tearing; a cut whose outline is mostly a guess is no subject at all. Every
layer samples inside the picture: the caller plans the camera and the parallax strength for it
(`background_reach`), and the maps are held at the edge, never reflected.

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

from stillmotion.engine.depth import Layers, _push_pull, boundary_confidence

__all__ = ["LayerMaps", "background_reach", "composite", "lag_floor", "sampling_maps"]

# At strength 1 a layer lags the reference plane by this share of the camera move per unit of
# depth: the sky (depth ~0.1) under a subject at ~0.85 moves at about 40 % of the camera's speed.
_GAIN = 0.8
# Where the subject's outline is unsure its depth reaches into the background over this share
# of the image (a Gaussian's sigma): wide enough that neighbouring pixels move apart by well
# under a pixel even on a strong zoom.
_RAMP = 0.05
_MIN_CARD = 0.05  # a card fainter than this everywhere is no card
_MIN_SURE_OUTLINE = 0.4  # a cut whose outline is on average less sure than this is no subject


@dataclass(frozen=True)
class _Plan:
    """What `composite` derives once per `Layers`: the plate's depth and the subject's colours."""

    background_depth: np.ndarray  # HxW, the depth of the plate, filled in under the subject
    reference: float  # the depth that moves exactly with the camera
    plate: np.ndarray  # HxWx3 uint8, what the background layer shows
    alpha: np.ndarray  # HxW float32, the card's matte: the sure part of the subject
    foreground: np.ndarray | None  # HxWx3 int16, subject colours unmixed from the plate
    image_id: int  # the image they were unmixed from


_plans: weakref.WeakKeyDictionary[Layers, _Plan] = weakref.WeakKeyDictionary()
_plans_lock = threading.Lock()


@dataclass(frozen=True)
class LayerMaps:
    """Where one layer of a frame samples its picture.

    `map_x`/`map_y` are backward maps in source pixels (output-sized, as for `cv2.remap`);
    `weight` is the layer's coverage in output pixels (None: it covers every pixel), and each
    layer is drawn over the ones before it.
    """

    name: str  # "image", "background" or "subject"
    map_x: np.ndarray
    map_y: np.ndarray
    weight: np.ndarray | None = None
    clamped: float = 0.0  # how far, at most, the maps were pulled back inside the picture


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
    plan = _plan_for(layers, image)
    maps = sampling_maps(
        layers, image, map_x, map_y, shift=shift, zoom=zoom, strength=strength, offsets=offsets
    )
    sources = {"image": image, "background": plan.plate, "subject": plan.foreground}
    out = _remap(sources[maps[0].name], maps[0].map_x, maps[0].map_y)
    for layer in maps[1:]:
        top = _remap(sources[layer.name], layer.map_x, layer.map_y)
        # out = B + a (F - B), in float, rounded once (cv2: a third of numpy's time here).
        a = layer.weight
        blend = cv2.subtract(top, out, dtype=cv2.CV_32F)
        cv2.multiply(blend, cv2.merge([a, a, a]), dst=blend)
        out = cv2.add(blend, out, dtype=cv2.CV_8U)
    return out


def sampling_maps(
    layers: Layers,
    image: np.ndarray,
    map_x: np.ndarray,
    map_y: np.ndarray,
    *,
    shift: tuple[float, float],
    zoom: float,
    strength: float,
    offsets: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[LayerMaps]:
    """The layers `composite` draws for these arguments, bottom first, and where each samples."""
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

    height, width = image.shape[:2]
    moving = strength > 0 and (shift[0] != 0 or shift[1] != 0 or zoom != 1)
    if not moving or plan.reference <= float(plan.background_depth.min()):
        return [_layer("image", map_x, map_y, width, height)]

    # How far each background pixel lags: g = 0 on the reference plane, down to -_GAIN*strength
    # at depth 0. A layer at g moves by (1 + g) of the camera's translation and zooms by z^(1+g).
    depth = _sample(plan.background_depth, map_x, map_y)
    lag = np.subtract(plan.reference, depth, out=depth)
    np.maximum(lag, 0.0, out=lag)
    lag *= -_GAIN * min(max(float(strength), 0.0), 1.0)
    grow = np.exp(lag * -math.log(max(float(zoom), 1e-6))) - 1.0
    back_x = map_x + (map_x - centre_x) * grow + lag * float(shift[0])
    back_y = map_y + (map_y - centre_y) * grow + lag * float(shift[1])
    background = _layer("background", back_x, back_y, width, height)
    if plan.foreground is None:
        return [background]

    alpha = cv2.remap(
        plan.alpha,
        map_x,
        map_y,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    if not alpha.any():
        return [background]
    return [background, _layer("subject", map_x, map_y, width, height, alpha)]


def lag_floor(layers: Layers, image: np.ndarray) -> float:
    """The most any layer lags at strength 1: a layer follows at least (1 + this) of the
    camera's translation and of its zoom's exponent."""
    plan = _plan_for(layers, image)
    return -_GAIN * max(0.0, plan.reference - float(plan.background_depth.min()))


def background_reach(
    layers: Layers,
    image: np.ndarray,
    corners: np.ndarray,
    *,
    centre: tuple[float, float],
    shift: tuple[float, float],
    zoom: float,
    strength: float,
) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): the box in source pixels that the background layer can sample, for a
    camera whose maps take the output's corner pixels to `corners` (4x2) and its centre to
    `centre`, whatever the depth under each pixel. For a given lag the background's maps are
    an affine function of the camera's, so their extremes are at the corners; lags are tried
    across their whole range. Offsets (brush, ambient) are not included."""
    lags = np.linspace(lag_floor(layers, image) * min(max(strength, 0.0), 1.0), 0.0, 17)
    grow = np.exp(lags * -math.log(max(float(zoom), 1e-6))) - 1.0
    pts = np.asarray(corners, np.float64)[None]  # 1x4x2
    c = np.array(centre, np.float64)
    moved = pts + (pts - c) * grow[:, None, None] + lags[:, None, None] * np.array(shift)
    return (
        float(moved[..., 0].min()),
        float(moved[..., 1].min()),
        float(moved[..., 0].max()),
        float(moved[..., 1].max()),
    )


def _layer(name, map_x, map_y, width, height, weight=None) -> LayerMaps:
    map_x, map_y, clamped = _inside(map_x, map_y, width, height)
    return LayerMaps(name, map_x, map_y, weight=weight, clamped=clamped)


def _inside(
    map_x: np.ndarray, map_y: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """The maps held inside the picture, and how far they had to be pulled back.

    Outside the picture there is nothing true to show: a reflection mirrors content back in,
    so sampling stops at the edge. The camera and the layers are planned to stay inside
    (`background_reach`); this is the guarantee, and it normally trims only sub-pixel slack.
    """
    worst = 0.0
    held = []
    for m, side in ((map_x, width - 1), (map_y, height - 1)):
        lo, hi, _, _ = cv2.minMaxLoc(m)
        if lo < 0 or hi > side:
            worst = max(worst, -lo, hi - side)
            m = np.clip(m, 0, side)
        held.append(m)
    return held[0], held[1], float(worst)


def _remap(source: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(source, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


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
            plate=image,
            alpha=alpha,
            foreground=None,
            image_id=id(image),
        )
    # The subject stands at its own depth; behind it the plate continues the depth around it.
    reference = float((depth * alpha).sum() / alpha.sum())
    background_depth = _push_pull(depth, (~inside).astype(np.float32))
    # Only the sure part of the outline is cut: there the subject is a card over the clean
    # plate. Where the outline is a guess, the subject stays in the plate (the photograph, not
    # the inpainted fill) and the plate's depth rises smoothly to the subject's around it, so
    # the picture bends there instead of tearing (DepthFlow's continuous displacement).
    sure = boundary_confidence(image, alpha)
    outline = (alpha > 0.05) & (alpha < 0.95)
    if outline.any() and float(sure[outline].mean()) < _MIN_SURE_OUTLINE:
        # An outline that is mostly a guess (a cut through sky and scaffolding) found no
        # subject: the whole picture moves by the smooth depth of the plate, continuously.
        return _Plan(
            background_depth=background_depth,
            reference=float(background_depth.max()),
            plate=image,
            alpha=np.zeros_like(alpha),
            foreground=None,
            image_id=id(image),
        )
    unsure = alpha * (1.0 - sure)
    card = alpha * sure
    background_depth = _merge_depth(background_depth, unsure, reference)
    if float(card.max()) < _MIN_CARD:
        return _Plan(
            background_depth=background_depth,
            reference=reference,
            plate=image,
            alpha=np.zeros_like(alpha),
            foreground=None,
            image_id=id(image),
        )
    card = _snap_card(card)
    photo = image.astype(np.float32)
    plate = layers.background.astype(np.float32)
    plate = np.rint(photo + sure[..., None] * (plate - photo))
    # Unmix the subject's colours so that B + a (F - B) gives back the photograph: F = B +
    # (I - B) / a. The plate of `estimate_layers` equals the photograph where a is small, which
    # keeps F within about ±5 x 255; the clip guards against other plates.
    on_card = card > 0
    safe = np.where(on_card, card, 1.0)[..., None]
    foreground = plate + (photo - plate) / safe
    foreground = np.clip(np.rint(foreground), -1536, 1791).astype(np.int16)
    return _Plan(
        background_depth=background_depth,
        reference=reference,
        plate=np.clip(plate, 0, 255).astype(np.uint8),
        alpha=card,
        foreground=foreground,
        image_id=id(image),
    )


def _snap_card(card: np.ndarray) -> np.ndarray:
    """The card's matte with a negligible rim set to exactly 0 (no work, no drift there)."""
    return np.where(card < 1e-3, 0.0, card).astype(np.float32)


def _merge_depth(background: np.ndarray, unsure: np.ndarray, reference: float) -> np.ndarray:
    """The plate's depth with the unsure part of the subject at the subject's own depth, rising
    to it smoothly from outside: the ramp lies on the background's side, so the subject itself
    keeps its shape and the background near it bends gently (under a pixel per pixel) instead.
    """
    if float(unsure.max()) <= 0.0:
        return background
    height, width = unsure.shape
    scale = min(1.0, 256 / max(height, width))
    size = (max(4, round(width * scale)), max(4, round(height * scale)))
    small = cv2.resize(unsure, size, interpolation=cv2.INTER_AREA)
    sigma = _RAMP * max(size)
    reach = int(2 * sigma) * 2 + 1
    grown = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))
    pad = reach
    grown = cv2.copyMakeBorder(grown, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    ramp = cv2.GaussianBlur(grown, (0, 0), sigma)[pad:-pad, pad:-pad]
    ramp = cv2.resize(ramp, (width, height), interpolation=cv2.INTER_LINEAR)
    weight = np.clip(np.maximum(ramp, unsure), 0.0, 1.0)
    return (background + weight * (reference - background)).astype(np.float32)
