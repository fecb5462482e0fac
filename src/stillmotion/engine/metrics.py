"""Measuring clips: camera motion read back from decoded frames, and colour-exact decoding.

Used by the engine's tests and `benchmarks/engine.py`; not part of the rendering path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from stillmotion.engine.encode import ycbcr_to_rgb


def decode_rgb(path: Path) -> Iterator[np.ndarray]:
    """Decoded frames as RGB uint8, converted with the exact BT.709 inverse (what a correct
    player shows) rather than swscale's rounding."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.format.name != "yuv420p":
                yield frame.to_ndarray(format="rgb24")
                continue
            w, h = frame.width, frame.height
            planes = [
                np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:ph, :pw]
                for p, (pw, ph) in zip(
                    frame.planes, ((w, h), (w // 2, h // 2), (w // 2, h // 2)), strict=True
                )
            ]
            yield ycbcr_to_rgb(*planes)


def decode_gray(path: Path, *, max_width: int | None = None) -> Iterator[np.ndarray]:
    """Decoded luma planes (float32), optionally downscaled to `max_width`."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            plane = frame.planes[0]
            y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            y = y[: frame.height, : frame.width]
            if max_width and frame.width > max_width:
                f = max_width / frame.width
                y = cv2.resize(
                    y, (max_width, round(frame.height * f)), interpolation=cv2.INTER_AREA
                )
            yield y.astype(np.float32)


def frame_motion(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Affine motion from `prev` to `cur` by ECC: a 2x3 matrix taking a pixel of `prev` to where
    its content lies in `cur`."""
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-7)
    # When ECC does not converge the pair reports no motion, which shows up as a jolt.
    with contextlib.suppress(cv2.error):
        _, warp = cv2.findTransformECC(prev, cur, warp, cv2.MOTION_AFFINE, criteria, None, 3)
    return warp


def corner_tracks(frames: Iterator[np.ndarray], *, out_width: int) -> np.ndarray:
    """How the content at the frame corners moves on screen from each frame to the next, in
    output pixels: shape (N-1, 8), (dx, dy) for top-left, top-right, bottom-left, bottom-right.

    Zoom, pan and roll all show up as corner motion, so one number (`roughness`) judges them.
    """
    prev = None
    rows = []
    scale = 1.0
    for gray in frames:
        if prev is None:
            prev = gray
            h, w = gray.shape
            scale = out_width / w
            corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64).T
            continue
        m = frame_motion(prev, gray).astype(np.float64)
        moved = m @ corners  # where the content at each corner of `prev` lies in `cur`
        rows.append(((moved - corners[:2]) * scale).T.reshape(-1))
        prev = gray
    return np.array(rows)


def roughness(tracks: np.ndarray) -> float:
    """RMS second difference of frame-to-frame motion (output pixels per frame²): zero for a
    constant velocity, small for an eased move, large for judder."""
    if len(tracks) < 3:
        return 0.0
    second = np.diff(tracks, n=1, axis=0)
    return float(np.sqrt(np.mean(second**2)))
