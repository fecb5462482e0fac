"""Framing: fit any source to 16:9, 9:16 or 1:1 without cutting the subject.

The subject is the union of detected faces (OpenCV's Haar cascade) or, without faces, the
salient region (spectral-residual saliency). The canvas is the source cropped to the target
aspect around the subject when that loses little (at most `MAX_CROP_LOSS` of the picture and
none of the subject); whatever mismatch is left is made up by extending the canvas with a
blurred, colour-matched copy of the picture, so nothing of the subject is cut.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

MAX_CROP_LOSS = 0.30  # share of the source area a crop may drop
MAX_FILL_FACTOR = 2.0  # ... unless the canvas would then be more than this many times the crop
_DETECT_SIDE = 640  # detection runs on a copy no larger than this


@dataclass(frozen=True)
class Subject:
    """The subject's box in source pixels (x0, y0, x1, y1) and how it was found."""

    box: tuple[float, float, float, float]
    kind: str  # "face" or "saliency"


@dataclass(frozen=True)
class Framing:
    """The canvas to animate (uint8 RGB) and where the source and subject lie on it."""

    canvas: np.ndarray
    subject: tuple[float, float, float, float] | None  # canvas pixels
    subject_kind: str | None
    crop: tuple[int, int, int, int]  # the part of the source used, source pixels
    extended: bool

    def as_dict(self) -> dict:
        return {
            "crop": list(self.crop),
            "extended": self.extended,
            "subject": None if self.subject is None else [round(float(v), 1) for v in self.subject],
            "subjectKind": self.subject_kind,
            "canvas": [int(self.canvas.shape[1]), int(self.canvas.shape[0])],
        }


_local = threading.local()


def _face_cascade() -> cv2.CascadeClassifier:
    """One classifier per thread: `detectMultiScale` is not safe to share between renders."""
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():  # pragma: no cover - a broken OpenCV install
            raise RuntimeError("OpenCV's face cascade is missing")
        _local.cascade = cascade
    return cascade


def find_faces(image: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Face boxes (x0, y0, x1, y1) in source pixels, largest first."""
    h, w = image.shape[:2]
    scale = min(1.0, _DETECT_SIDE / max(h, w))
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    side = max(24, round(min(small.shape[:2]) * 0.06))
    found = _face_cascade().detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=6, minSize=(side, side)
    )
    boxes = [(x / scale, y / scale, (x + fw) / scale, (y + fh) / scale) for x, y, fw, fh in found]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def find_salient(image: np.ndarray) -> tuple[float, float, float, float]:
    """The box holding the densest half of the saliency mass, in source pixels."""
    h, w = image.shape[:2]
    scale = min(1.0, 256 / max(h, w))
    small = cv2.resize(image, (max(8, round(w * scale)), max(8, round(h * scale))))
    sal = cv2.saliency.StaticSaliencySpectralResidual_create()
    ok, smap = sal.computeSaliency(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover
        return (0.25 * w, 0.25 * h, 0.75 * w, 0.75 * h)
    smap = cv2.GaussianBlur(smap.astype(np.float32), (0, 0), 3)
    # Centre-weighted, as photographers frame: a mild prior against busy borders.
    yy, xx = np.mgrid[0 : smap.shape[0], 0 : smap.shape[1]]
    prior = np.exp(
        -(((xx / smap.shape[1] - 0.5) ** 2) + ((yy / smap.shape[0] - 0.5) ** 2)) / (2 * 0.3**2)
    )
    smap = smap * prior
    total = float(smap.sum()) or 1.0
    # Grow a box around the weighted centroid until it holds half the mass.
    cy = float((smap.sum(axis=1) * np.arange(smap.shape[0])).sum() / total)
    cx = float((smap.sum(axis=0) * np.arange(smap.shape[1])).sum() / total)
    sh, sw = smap.shape
    r = 0.1
    while r < 1.0:
        x0, x1 = int(max(0, cx - r * sw)), int(min(sw, cx + r * sw + 1))
        y0, y1 = int(max(0, cy - r * sh)), int(min(sh, cy + r * sh + 1))
        if smap[y0:y1, x0:x1].sum() >= 0.5 * total:
            break
        r += 0.05
    return (x0 / scale, y0 / scale, x1 / scale, y1 / scale)


def find_subject(image: np.ndarray) -> Subject:
    """Faces first (with room for hair and shoulders in the box), else saliency."""
    faces = find_faces(image)
    if faces:
        main = faces[0]
        keep = [f for f in faces if (f[2] - f[0]) >= 0.5 * (main[2] - main[0])]
        x0 = min(f[0] for f in keep)
        y0 = min(f[1] for f in keep)
        x1 = max(f[2] for f in keep)
        y1 = max(f[3] for f in keep)
        return Subject(box=(x0, y0, x1, y1), kind="face")
    return Subject(box=find_salient(image), kind="saliency")


def _extend(image: np.ndarray, width: int, height: int, ox: int, oy: int) -> np.ndarray:
    """Place `image` at (ox, oy) on a width x height canvas filled with a blurred,
    colour-matched, slightly darkened enlargement of it; the seam is feathered."""
    h, w = image.shape[:2]
    # Cover-scale the image onto the canvas, blur heavily at low resolution (cheap).
    cover = max(width / w, height / h)
    small_side = 96
    f = small_side / max(width, height)
    sw, sh = max(4, round(width * f)), max(4, round(height * f))
    src_small = cv2.resize(
        image,
        (max(4, round(w * cover * f)), max(4, round(h * cover * f))),
        interpolation=cv2.INTER_AREA,
    )
    y_off = (src_small.shape[0] - sh) // 2
    x_off = (src_small.shape[1] - sw) // 2
    bg = src_small[max(0, y_off) : max(0, y_off) + sh, max(0, x_off) : max(0, x_off) + sw]
    bg = cv2.resize(bg, (sw, sh))
    bg = cv2.GaussianBlur(bg.astype(np.float32), (0, 0), sigmaX=small_side / 24)
    # Match the fill's mean and spread to the picture's edge colours, dimmed a little.
    edge = np.concatenate(
        [
            image[:4].reshape(-1, 3),
            image[-4:].reshape(-1, 3),
            image[:, :4].reshape(-1, 3),
            image[:, -4:].reshape(-1, 3),
        ]
    ).astype(np.float32)
    mean, std = bg.reshape(-1, 3).mean(0), bg.reshape(-1, 3).std(0) + 1e-3
    bg = (bg - mean) / std * np.minimum(std, edge.std(0) + 1e-3) + edge.mean(0)
    bg = np.clip(np.rint(bg * 0.85), 0, 255).astype(np.uint8)
    fill = cv2.resize(bg, (width, height), interpolation=cv2.INTER_LINEAR)
    canvas = fill.copy()
    canvas[oy : oy + h, ox : ox + w] = image
    # Feather the seams: blend over a few percent of the picture's size, only in those bands
    # (a full-canvas float blend would cost gigabytes for a panorama).
    feather = max(2, min(round(0.03 * min(w, h)), w // 2, h // 2))
    ramp = np.linspace(0, 1, feather + 2, dtype=np.float32)[1:-1]
    bands = []
    if ox > 0:
        bands.append((slice(oy, oy + h), slice(ox, ox + feather), ramp[None, :]))
    if ox + w < width:
        bands.append((slice(oy, oy + h), slice(ox + w - feather, ox + w), ramp[::-1][None, :]))
    if oy > 0:
        bands.append((slice(oy, oy + feather), slice(ox, ox + w), ramp[:, None]))
    if oy + h < height:
        bands.append((slice(oy + h - feather, oy + h), slice(ox, ox + w), ramp[::-1][:, None]))
    for rows, cols, alpha in bands:
        under = fill[rows, cols].astype(np.float32)
        top = canvas[rows, cols].astype(np.float32)
        blended = under + (top - under) * alpha[..., None]
        canvas[rows, cols] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return canvas


def frame_image(
    image: np.ndarray,
    *,
    aspect: float,
    subject: Subject | None,
    max_crop_loss: float = MAX_CROP_LOSS,
) -> Framing:
    """Fit `image` (uint8 RGB) to `aspect` (width / height). Without a subject the crop is
    centred (gen-2's centre framing)."""
    h, w = image.shape[:2]
    src_aspect = w / h
    box = subject.box if subject else None
    if abs(src_aspect - aspect) / aspect < 0.01:
        return Framing(image, box, subject.kind if subject else None, (0, 0, w, h), False)
    if src_aspect > aspect:
        # too wide: crop width (keeping the subject), extend height for the rest
        full_w = h * aspect
        # crop little, but never leave more than half of the canvas to the fill
        crop_w = max(full_w, min(w * (1 - max_crop_loss), MAX_FILL_FACTOR * full_w))
        if box and subject.kind == "face":  # saliency is a hint; a face is kept whole
            crop_w = max(crop_w, min(w, (box[2] - box[0]) * 1.15))
        cx = (box[0] + box[2]) / 2 if box else w / 2
        x0 = round(min(max(cx - crop_w / 2, 0), w - crop_w))
        cw = round(crop_w)
        cropped = image[:, x0 : x0 + cw]
        crop = (x0, 0, x0 + cw, h)
        canvas_w, canvas_h = cw, max(h, round(cw / aspect))
        ox, oy = 0, (canvas_h - h) // 2
    else:
        full_h = w / aspect
        crop_h = max(full_h, min(h * (1 - max_crop_loss), MAX_FILL_FACTOR * full_h))
        if box and subject.kind == "face":  # saliency is a hint; a face is kept whole
            crop_h = max(crop_h, min(h, (box[3] - box[1]) * 1.15))
        cy = (box[1] + box[3]) / 2 if box else h / 2
        y0 = round(min(max(cy - crop_h / 2, 0), h - crop_h))
        ch = round(crop_h)
        cropped = image[y0 : y0 + ch]
        crop = (0, y0, w, y0 + ch)
        canvas_h, canvas_w = ch, max(w, round(ch * aspect))
        ox, oy = (canvas_w - w) // 2, 0
    ch_, cw_ = cropped.shape[:2]
    extended = canvas_w > cw_ or canvas_h > ch_
    canvas = _extend(cropped, canvas_w, canvas_h, ox, oy) if extended else cropped.copy()
    sub = None
    if box:
        # in canvas pixels, clipped to what the crop kept (a saliency box may be cut)
        x0 = min(max(box[0] - crop[0], 0), cw_) + ox
        y0 = min(max(box[1] - crop[1], 0), ch_) + oy
        x1 = min(max(box[2] - crop[0], 0), cw_) + ox
        y1 = min(max(box[3] - crop[1], 0), ch_) + oy
        sub = (x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None
    return Framing(canvas, sub, subject.kind if subject else None, crop, extended)
