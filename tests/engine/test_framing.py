"""Framing: the subject is found, kept, and stays wholly inside every frame of the move."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from stillmotion.engine import RenderSpec, render
from stillmotion.engine.framing import find_subject, frame_image
from stillmotion.engine.metrics import decode_rgb

_CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return [tuple(f) for f in _CASCADE.detectMultiScale(gray, 1.1, 5, minSize=(30, 30))]


def test_astronaut_face_is_the_subject():
    subject = find_subject(data.astronaut())
    assert subject.kind == "face"
    x0, y0, x1, y1 = subject.box
    # her face is around x 170-290, y 40-180 in the 512 x 512 picture
    assert 150 < (x0 + x1) / 2 < 300 and 50 < (y0 + y1) / 2 < 180


def test_saliency_finds_the_cat_when_there_is_no_face():
    subject = find_subject(data.coffee())
    assert subject.kind in ("face", "saliency")
    x0, y0, x1, y1 = subject.box
    assert 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 400


@pytest.mark.parametrize("aspect", [16 / 9, 9 / 16, 1.0])
def test_canvas_has_the_target_aspect_and_keeps_the_subject(aspect):
    image = data.astronaut()
    subject = find_subject(image)
    framed = frame_image(image, aspect=aspect, subject=subject)
    h, w = framed.canvas.shape[:2]
    assert w / h == pytest.approx(aspect, rel=0.01)
    x0, y0, x1, y1 = framed.subject
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    # the source pixels survive where they were placed
    cx0, cy0, cx1, cy1 = framed.crop
    assert (cx1 - cx0) * (cy1 - cy0) >= 0.69 * image.shape[0] * image.shape[1]


def test_extension_fill_is_colour_matched_not_black():
    image = data.rocket()  # 640 x 427: a 9:16 canvas must be extended above and below
    framed = frame_image(image, aspect=9 / 16, subject=find_subject(image))
    assert framed.extended
    h, _w = framed.canvas.shape[:2]
    strip = framed.canvas[: h // 20].astype(np.float32)
    assert strip.mean() > 20  # a blurred copy, not black bars
    assert abs(strip.mean() - image.mean()) < 60


@pytest.mark.parametrize(
    ("aspect_ratio", "size", "camera"),
    [
        ("9:16", (270, 480), {"zoom": 10}),
        ("16:9", (480, 270), {"zoom": 10}),
        ("16:9", (480, 270), {"zoom": 6, "pan": 10, "roll": 5}),
    ],
)
def test_face_stays_wholly_inside_every_frame(tmp_path, astronaut, aspect_ratio, size, camera):
    out = tmp_path / "face.mp4"
    spec = RenderSpec(
        aspect_ratio=aspect_ratio, duration=2, width=size[0], height=size[1], camera=camera
    )
    result = render(astronaut, spec, out)
    assert result.plan["camera"]["zoom"] > 0
    count = 0
    for frame in decode_rgb(out):
        found = faces(frame)
        assert found, f"no face in frame {count}"
        x, y, w, h = max(found, key=lambda f: f[2] * f[3])
        assert x > 0 and y > 0 and x + w < size[0] and y + h < size[1]
        count += 1
    assert count == 48


def test_extreme_aspect_crops_more_rather_than_drowning_in_fill():
    pano = np.ascontiguousarray(np.tile(data.coffee()[:64], (1, 13, 1))[:, :7800])  # 7800 x 64
    framed = frame_image(pano, aspect=9 / 16, subject=find_subject(pano))
    h, w = framed.canvas.shape[:2]
    x0, y0, x1, y1 = framed.crop
    assert w / h == pytest.approx(9 / 16, rel=0.02)
    assert w * h <= 2.05 * (x1 - x0) * (y1 - y0)  # at most half of the canvas is fill
