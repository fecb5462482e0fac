"""Layered depth for gen-4 parallax: a subject matte, a smooth depth prior and a clean plate.

No model weights: the subject is cut out with GrabCut (seeded by the subject box, or by a
saliency-weighted box when there is none), its matte is refined with a guided filter so the edge
follows the photograph, and the area behind it is inpainted so that a moving camera has something
true-looking to uncover. Depth is a prior rather than a measurement: lower in the frame is nearer,
salient areas come forward a little, and the subject is a card standing at its own depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Layers", "boundary_confidence", "estimate_layers"]

_CUT_SIDE = 384  # GrabCut and saliency run at this size; they need shape, not detail
_MATTE_SIDE = 1024  # matte refinement and inpainting run at most at this size
_MIN_SUBJECT = 0.01  # a cut-out smaller than this share of the image is no subject
_MAX_SUBJECT = 0.85  # nor is one larger than this
# The outline of a cut is trusted where the colours just inside and just outside it differ by
# this much (CIE76 delta E between the two sides' local means): from nothing at _SURE_LOW to
# full at _SURE_HIGH. A suit against a wall is 40-60; a cut through sky, or through a launch
# tower that runs on past it, is under 10.
_SURE_LOW = 12.0
_SURE_HIGH = 28.0


@dataclass(eq=False)
class Layers:
    """The source image split for parallax, all at the source's size HxW.

    `depth` is float32 0 (far) … 1 (near) and smooth; `subject_alpha` is the float32 0 … 1 matte of
    the subject, feathered at its edge, all zeros when no subject was found; `background` is the
    uint8 RGB image with the subject removed and its area filled. Where `subject_alpha` is 0,
    `background` equals the source exactly.
    """

    depth: np.ndarray
    subject_alpha: np.ndarray
    background: np.ndarray


def estimate_layers(
    image: np.ndarray, *, subject_box: tuple[int, int, int, int] | None, seed: int
) -> Layers:
    """Split `image` (uint8 RGB HxWx3) into depth, subject matte and background.

    `subject_box` is the subject's `(x, y, w, h)` in pixels of `image`, when the caller knows it
    (faces, saliency framing); without it a box is taken from the saliency map. A small, nearly
    square box is taken for a face and grown to head and shoulders, so that a portrait's hair
    and body move with the face. The same image, box and `seed` always give the same layers.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image HxWx3, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    small = _resize_to(image, _CUT_SIDE)
    saliency = _saliency(small)
    prior = _depth_prior(saliency)

    core = None
    if subject_box:
        scale = small.shape[1] / width
        grown, core = _person(subject_box, width=width, height=height, scale=scale)
        box = _clip_box(*(v * scale for v in grown), small.shape[1], small.shape[0])
    else:
        box = _box_from_saliency(saliency)
    cut = _cut_subject(small, box, seed, core=core) if box is not None else None
    if cut is None:
        depth = cv2.resize(prior, (width, height), interpolation=cv2.INTER_LINEAR)
        return Layers(
            depth=np.clip(depth, 0.0, 1.0),
            subject_alpha=np.zeros((height, width), np.float32),
            background=image.copy(),
        )

    mid = _resize_to(image, _MATTE_SIDE)
    alpha_mid = _matte(mid, cut)
    alpha = _snap(cv2.resize(alpha_mid, (width, height), interpolation=cv2.INTER_LINEAR))
    background = _clean_plate(image, mid, cut, alpha)

    # The subject is a card standing where its lowest part meets the ground, pushed forward.
    rows = np.nonzero(cut.any(axis=1))[0]
    foot = prior[rows[-1], :].mean()
    subject_depth = float(np.clip(foot + 0.15, 0.7, 0.95))
    prior_full = cv2.resize(prior, (width, height), interpolation=cv2.INTER_LINEAR)
    depth = prior_full + alpha * (subject_depth - prior_full)
    return Layers(depth=np.clip(depth, 0.0, 1.0), subject_alpha=alpha, background=background)


def boundary_confidence(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """How sure the outline of the matte `alpha` is, 0 … 1 per pixel (float32, HxW), smooth.

    An outline is sure where it follows an edge of the photograph: the colours on its two
    sides differ. Where they do not (the cut runs through sky, or through a structure that
    carries on past it) the outline is a guess, and a viewer would see a tear if the two sides
    moved apart. Measured at a small size along the outline, then spread over the image.
    """
    height, width = alpha.shape
    if not alpha.any():
        return np.zeros((height, width), np.float32)
    small = _resize_to(image, _CUT_SIDE)
    sh, sw = small.shape[:2]
    a = cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    sigma = 0.02 * max(sh, sw)
    inner_w = cv2.GaussianBlur(a, (0, 0), sigma)
    outer_w = cv2.GaussianBlur(1.0 - a, (0, 0), sigma)
    inner = cv2.GaussianBlur(lab * a[..., None], (0, 0), sigma)
    outer = cv2.GaussianBlur(lab * (1.0 - a)[..., None], (0, 0), sigma)
    inner /= np.maximum(inner_w, 1e-3)[..., None]
    outer /= np.maximum(outer_w, 1e-3)[..., None]
    contrast = np.sqrt(((inner - outer) ** 2).sum(axis=2))
    sure = np.clip((contrast - _SURE_LOW) / (_SURE_HIGH - _SURE_LOW), 0.0, 1.0)
    # Weigh each pixel by how much it sits on the outline (both sides present), then spread
    # the outline's verdict inwards and outwards; a smooth field, so the subject fades from
    # card to continuous along its outline rather than switching.
    on_edge = np.clip(4.0 * inner_w * outer_w, 0.0, 1.0) ** 2
    field = _push_pull(sure.astype(np.float32), on_edge.astype(np.float32))
    field = cv2.GaussianBlur(field, (0, 0), 2 * sigma)
    # A verdict, not a shade: mostly sure is sure, mostly unsure is unsure (a half-cut subject
    # would show both its card and its bent copy). The blur keeps the change of mind gradual.
    field = np.clip((field - 0.3) / 0.4, 0.0, 1.0)
    field = cv2.GaussianBlur(field, (0, 0), sigma)
    field = cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(field, 0.0, 1.0).astype(np.float32)


def _resize_to(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _saliency(small: np.ndarray) -> np.ndarray:
    """Fine-grained saliency, smoothed into blobs, with a mild centre bias; 0 … 1."""
    detector = cv2.saliency.StaticSaliencyFineGrained_create()
    ok, raw = detector.computeSaliency(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    height, width = small.shape[:2]
    if not ok:
        return np.zeros((height, width), np.float32)
    sal = raw.astype(np.float32)
    sal = cv2.GaussianBlur(sal, (0, 0), 0.03 * max(height, width))
    ys = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]
    xs = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]
    sal *= np.exp(-(xs**2 + ys**2) / (2 * 0.3**2))
    peak = float(sal.max())
    return sal / peak if peak > 0 else sal


def _depth_prior(saliency: np.ndarray) -> np.ndarray:
    """Far at the top, near at the bottom, salient areas a little nearer; very smooth."""
    height, width = saliency.shape
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    prior = 0.1 + 0.65 * rows**1.5 + np.zeros((1, width), np.float32)
    boost = cv2.GaussianBlur(saliency, (0, 0), 0.08 * max(height, width))
    return (prior + 0.15 * boost).astype(np.float32)


def _person(
    box: tuple[int, int, int, int], *, width: int, height: int, scale: float
) -> tuple[tuple[float, float, float, float], np.ndarray | None]:
    """A face-sized box grown to the head and shoulders below it; other boxes as they are.

    For a face, also the mask (at `scale`) of what is surely the person: the middle of the face
    and a strip down from the chin, so GrabCut cannot drop the neck or split head from body.
    """
    x, y, w, h = (float(v) for v in box)
    if w * h > 0.08 * width * height or not 0.6 < w / max(h, 1.0) < 1.6:
        return (x, y, w, h), None
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    core = np.zeros((small_h, small_w), np.uint8)
    cx, cy = (x + w / 2) * scale, (y + h / 2) * scale
    axes = (max(1, round(0.3 * w * scale)), max(1, round(0.35 * h * scale)))
    cv2.ellipse(core, (round(cx), round(cy)), axes, 0, 0, 360, 1, -1)
    strip = round(0.2 * w * scale)
    core[round(cy) : small_h, max(0, round(cx) - strip) : round(cx) + strip + 1] = 1
    top = y - 0.6 * h
    return (x - 1.7 * w, top, 4.4 * w, height - top), core  # shoulders run out of the frame


def _clip_box(
    x: float, y: float, w: float, h: float, width: int, height: int
) -> tuple[int, int, int, int] | None:
    x0, y0 = max(0, round(x)), max(0, round(y))
    x1, y1 = min(width, round(x + w)), min(height, round(y + h))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    # GrabCut needs some definite background outside the rectangle.
    x0, y0 = max(x0, 1), max(y0, 1)
    x1, y1 = min(x1, width - 1), min(y1, height - 1)
    return x0, y0, x1 - x0, y1 - y0


def _box_from_saliency(saliency: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box holding most of the saliency mass: its weighted mean ± 2 standard deviations."""
    height, width = saliency.shape
    weight = np.where(saliency > 0.25, saliency, 0.0)
    total = float(weight.sum())
    if total <= 0:
        return None
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = float((weight * xs).sum() / total), float((weight * ys).sum() / total)
    sx = float(np.sqrt((weight * (xs - cx) ** 2).sum() / total))
    sy = float(np.sqrt((weight * (ys - cy) ** 2).sum() / total))
    return _clip_box(cx - 2 * sx, cy - 2 * sy, 4 * sx, 4 * sy, width, height)


def _cut_subject(
    small: np.ndarray,
    box: tuple[int, int, int, int],
    seed: int,
    *,
    core: np.ndarray | None,
) -> np.ndarray | None:
    """GrabCut in `box`; when that finds next to nothing, in larger boxes around its middle.

    A box drawn inside the subject (a saliency core, a torso) leaves the subject's own colours
    outside it, marked background, and GrabCut then gives up. Grown boxes, with the middle of
    the given one marked surely subject, recover it.
    """
    height, width = small.shape[:2]
    x, y, w, h = box
    for grow in (1.0, 1.7, 2.6):
        tried = _clip_box(
            x + w / 2 - grow * w / 2, y + h / 2 - grow * h / 2, grow * w, grow * h, width, height
        )
        if tried is None:
            return None
        sure = core
        if grow > 1.0:
            sure = np.zeros((height, width), np.uint8) if core is None else core.copy()
            axes = (max(1, round(w / 4)), max(1, round(h / 4)))
            cv2.ellipse(sure, (round(x + w / 2), round(y + h / 2)), axes, 0, 0, 360, 1, -1)
        cut = _grabcut(small, tried, seed, core=sure)
        if cut is not None and cut.sum() >= 0.1 * tried[2] * tried[3]:
            return cut
    return None


def _grabcut(
    small: np.ndarray,
    box: tuple[int, int, int, int],
    seed: int,
    *,
    core: np.ndarray | None = None,
) -> np.ndarray | None:
    """The subject as a boolean mask at the size of `small`, or None when the cut is no subject.

    Outside `box` is background; inside it is probably subject, and surely so where `core` is 1.
    """
    height, width = small.shape[:2]
    x, y, w, h = box
    mask = np.full((height, width), cv2.GC_BGD, np.uint8)
    mask[y : y + h, x : x + w] = cv2.GC_PR_FGD
    if core is not None:
        mask[(core > 0) & (mask == cv2.GC_PR_FGD)] = cv2.GC_FGD
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(int(seed) % 2_147_483_647)
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    try:
        cv2.grabCut(bgr, mask, None, bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a degenerate box or a flat image: no subject to cut
        return None
    cut = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    # Keep the big pieces (a head cut off by a dark collar is still the subject), drop the
    # confetti, and close small holes: the subject moves as one card.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cut, connectivity=8)
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= 0.15 * areas.max()) + 1
    cut = np.isin(labels, keep).astype(np.uint8)
    # Bridge narrow gaps (a dark collar between head and shoulders): a torn subject, its parts
    # moving apart, looks far worse than a sliver of background moving with it.
    size = max(5, round(0.06 * max(height, width))) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    padded = cv2.copyMakeBorder(cut, size, size, size, size, cv2.BORDER_REPLICATE)
    cut = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel)[size:-size, size:-size]
    cut = _fill_holes(cut)
    share = float(cut.mean())
    if not _MIN_SUBJECT <= share <= _MAX_SUBJECT:
        return None
    return cut.astype(bool)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every background pocket that does not reach the border filled."""
    count, labels = cv2.connectedComponents((mask == 0).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    pockets = np.setdiff1d(np.arange(1, count), border)
    filled = mask.copy()
    filled[np.isin(labels, pockets)] = 1
    return filled


def _matte(mid: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """A soft matte at the size of `mid`: the cut, edge-aligned by a guided filter, feathered."""
    height, width = mid.shape[:2]
    # Reach a little past the cut: a sliver of background riding with the subject goes unseen,
    # a rim of the subject left behind on the plate shows as a ghost outline.
    reach = max(3, round(0.02 * max(cut.shape))) | 1
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach))
    cut = cv2.dilate(cut.astype(np.uint8), ring)
    hard = cv2.resize(cut.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    radius = max(2, round(0.01 * max(height, width)))
    guided = cv2.ximgproc.guidedFilter(mid, hard, radius, 1e-3 * 255**2)
    feather = 0.004 * max(height, width)
    soft = cv2.GaussianBlur(np.clip(guided, 0.0, 1.0), (0, 0), max(0.8, feather))
    return _snap(soft)


def _snap(alpha: np.ndarray) -> np.ndarray:
    """Exact 0 and 1 away from the edge, so untouched areas stay bit-exact."""
    alpha = np.clip((alpha - 0.02) / 0.96, 0.0, 1.0)
    return alpha.astype(np.float32)


def _clean_plate(
    image: np.ndarray, mid: np.ndarray, cut: np.ndarray, alpha: np.ndarray
) -> np.ndarray:
    """`image` with the subject inpainted away; equal to `image` wherever the matte is 0."""
    height, width = mid.shape[:2]
    hole = cv2.resize(cut.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    grow = max(3, round(0.025 * max(height, width))) | 1
    hole = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    reach = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_AREA)
    hole = np.maximum(hole, (reach > 0).astype(np.uint8))
    filled = _inpaint(mid, hole)
    # The filled plate replaces the photograph only inside the matte, reaching full weight a
    # fifth of the way up the edge (so the subject's own edge leaves no ghost behind when it
    # moves, yet the unmixed subject colours stay bounded); outside it the background is the
    # source, bit for bit.
    full_h, full_w = image.shape[:2]
    filled = cv2.resize(filled, (full_w, full_h), interpolation=cv2.INTER_CUBIC)
    weight = np.clip(alpha * 5.0, 0.0, 1.0)[..., None]
    plate = image.astype(np.float32) + weight * (filled - image)
    return np.clip(np.rint(plate), 0, 255).astype(np.uint8)


def _inpaint(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill `hole` (uint8, 1 = unknown) of `image`; float32, smooth inside the hole.

    Telea's method carries the colours at the hole's edge inwards, which is what the slivers a
    moving subject uncovers need; run small and blurred, its streaks melt into soft texture.
    Push-pull fills whatever is left at the small size (a hole with no edge to carry).
    """
    height, width = hole.shape
    scale = min(1.0, 256 / max(height, width))
    size = (max(4, round(width * scale)), max(4, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
    filled = cv2.inpaint(small, small_hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(filled.astype(np.float32), (0, 0), 1.5)
    coarse = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
    known = (hole == 0)[..., None]
    return np.where(known, image.astype(np.float32), coarse)


def _push_pull(color: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown pixels of `color` from the known ones, coarse to fine.

    Streak-free and smooth (a clean plate is seen only in the slivers a moving subject uncovers,
    where softness reads as depth of field and streaks read as damage).
    """
    if known.min() >= 1.0 or known.max() <= 0.0:
        return color
    spread = known[..., None] if color.ndim == 3 else known
    pyramid = [(color * spread, known)]
    while min(pyramid[-1][1].shape) > 2:
        premultiplied, weight = pyramid[-1]
        pyramid.append((cv2.pyrDown(premultiplied), cv2.pyrDown(weight)))
    premultiplied, weight = pyramid[-1]
    mean = premultiplied.sum(axis=(0, 1)) / max(float(weight.sum()), 1e-6)
    filled = np.broadcast_to(mean, premultiplied.shape).astype(np.float32)
    for premultiplied, weight in reversed(pyramid[:-1]):
        height, width = weight.shape
        coarse = cv2.pyrUp(filled, dstsize=(width, height))
        weight = weight[..., None] if color.ndim == 3 else weight
        trust = np.clip(weight, 0.0, 1.0)
        own = premultiplied / np.maximum(weight, 1e-6)
        filled = trust * own + (1.0 - trust) * coarse
    return filled
