"""Depth layers and parallax compositing on a real photograph, at a small size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from stillmotion.engine.depth import Layers, estimate_layers
from stillmotion.engine.parallax import composite

SIDE = 256
BOX = (30, 5, 165, 250)  # the astronaut, head to waist, in the 256 px image
OUT = 192  # the camera window; it starts MARGIN px in from the left and top
MARGIN = 32
# Patches in output pixels: the suit (subject, near) and the model shuttle top right (far).
NEAR = (slice(120, 168), slice(50, 98))
FAR = (slice(0, 48), slice(144, 192))


def _photo() -> np.ndarray:
    return cv2.resize(data.astronaut(), (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def _camera(*, pan: float = 0.0, zoom: float = 1.0, size: int = OUT) -> tuple:
    """Backward maps of a `size` px window, panned right by `pan`, zoomed about its centre."""
    ys, xs = np.indices((size, size), dtype=np.float32)
    centre = MARGIN + (OUT - 1) / 2
    map_x = centre + pan + (xs - (size - 1) / 2) / zoom
    map_y = centre + (ys - (size - 1) / 2) / zoom
    return map_x.astype(np.float32), map_y.astype(np.float32)


def _shift(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """How far the content of `before` moved to reach `after` (phase correlation)."""
    a = cv2.cvtColor(before, cv2.COLOR_RGB2GRAY).astype(np.float64)
    b = cv2.cvtColor(after, cv2.COLOR_RGB2GRAY).astype(np.float64)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
    return dx, dy


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return _photo()


@pytest.fixture(scope="module")
def layers(photo: np.ndarray) -> Layers:
    return estimate_layers(photo, subject_box=BOX, seed=7)


def test_layers_split_subject_from_background(photo: np.ndarray, layers: Layers) -> None:
    alpha, depth, plate = layers.subject_alpha, layers.depth, layers.background
    assert alpha.shape == depth.shape == (SIDE, SIDE) and plate.shape == photo.shape
    assert alpha.dtype == depth.dtype == np.float32 and plate.dtype == np.uint8
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0 and 0.0 <= depth.min() <= depth.max() <= 1.0
    # The suit and the face are subject; the top corners are not.
    assert alpha[150:200, 80:140].mean() > 0.95
    assert alpha[60:80, 100:120].mean() > 0.9
    assert alpha[:20, :20].max() == 0.0 and alpha[:20, -20:].max() == 0.0
    # Feathered: a band of partial alpha along the edge, not a hard cut.
    partial = (alpha > 0.05) & (alpha < 0.95)
    edge = cv2.morphologyEx((alpha > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3)))
    assert partial.sum() > 1.5 * edge.sum()
    # The plate keeps the photograph outside the subject and replaces it inside.
    outside = alpha == 0
    assert np.array_equal(plate[outside], photo[outside])
    inner = cv2.erode((alpha == 1).astype(np.uint8), np.ones((15, 15))).astype(bool)
    assert np.abs(plate[inner].astype(int) - photo[inner]).mean() > 20
    # Nearer lower down, the subject nearer than the wall behind its head.
    assert depth[-10:].mean() > depth[:10].mean() + 0.3
    assert depth[70, 110] > depth[20, 240] + 0.3


def test_layers_are_deterministic_for_a_seed(photo: np.ndarray, layers: Layers) -> None:
    again = estimate_layers(photo, subject_box=BOX, seed=7)
    for name in ("depth", "subject_alpha", "background"):
        assert np.array_equal(getattr(again, name), getattr(layers, name)), name


def test_layers_without_a_box_or_a_subject() -> None:
    flat = np.full((96, 128, 3), 120, np.uint8)
    layers = estimate_layers(flat, subject_box=None, seed=0)
    assert not layers.subject_alpha.any()
    assert np.array_equal(layers.background, flat)
    assert layers.depth[-1].mean() > layers.depth[0].mean()


def test_a_still_camera_gives_the_photograph_back(photo: np.ndarray, layers: Layers) -> None:
    ys, xs = np.indices(photo.shape[:2], dtype=np.float32)
    frame = composite(layers, photo, xs, ys, shift=(0.0, 0.0), zoom=1.0, strength=1.0)
    assert np.array_equal(frame, photo)
    # The layered path, taken as soon as the camera moves, starts from the same picture: no pop
    # between the first frame and the second, or across a loop's seam.
    nudged = composite(layers, photo, xs + 0.001, ys, shift=(0.001, 0.0), zoom=1.0, strength=1.0)
    assert np.abs(nudged.astype(int) - photo).max() <= 1


def test_near_layers_move_faster_than_far_ones(photo: np.ndarray, layers: Layers) -> None:
    pan = 12.0
    first = composite(layers, photo, *_camera(), shift=(0.0, 0.0), zoom=1.0, strength=1.0)
    later = composite(layers, photo, *_camera(pan=pan), shift=(pan, 0.0), zoom=1.0, strength=1.0)
    assert first.shape == (OUT, OUT, 3)
    near_dx, near_dy = _shift(first[NEAR], later[NEAR])
    far_dx, far_dy = _shift(first[FAR], later[FAR])
    # The camera pans right, so content moves left; the subject exactly with the camera.
    assert near_dx == pytest.approx(-pan, abs=1.0)
    assert -pan * 0.8 < far_dx < -1.0
    assert abs(near_dx) - abs(far_dx) > 0.3 * pan
    assert abs(near_dy) < 1.0 and abs(far_dy) < 1.0
    # Without parallax both move alike.
    flat = composite(layers, photo, *_camera(pan=pan), shift=(pan, 0.0), zoom=1.0, strength=0.0)
    assert _shift(first[FAR], flat[FAR])[0] == pytest.approx(-pan, abs=1.0)


def test_zoom_grows_the_subject_more_than_the_background(photo: np.ndarray, layers: Layers) -> None:
    zoom = 1.08
    first = composite(layers, photo, *_camera(), shift=(0.0, 0.0), zoom=1.0, strength=1.0)
    later = composite(layers, photo, *_camera(zoom=zoom), shift=(0.0, 0.0), zoom=zoom, strength=1.0)
    # Growing about the centre, a patch drifts away from it by (zoom - 1) x its distance;
    # the subject by exactly that, the far background by much less.
    centre = (OUT - 1) / 2

    def drift(patch: tuple[slice, slice]) -> tuple[float, float]:
        return tuple((zoom - 1) * ((s.start + s.stop - 1) / 2 - centre) for s in patch[::-1])

    near = _shift(first[NEAR], later[NEAR])
    far = _shift(first[FAR], later[FAR])
    assert np.hypot(*np.subtract(near, drift(NEAR))) < 1.0
    ratio = np.hypot(*far) / np.hypot(*drift(FAR))
    assert 0.2 < ratio < 0.7


@pytest.mark.parametrize(
    ("pan", "zoom"), [(40.0, 1.0), (-40.0, 1.0), (0.0, 1.3), (25.0, 0.8), (-25.0, 1.2)]
)
def test_no_frame_has_unfilled_pixels(layers: Layers, pan: float, zoom: float) -> None:
    # A white world: any hole, gap in coverage or out-of-source sample shows as less than white.
    white = np.full((SIDE, SIDE, 3), 255, np.uint8)
    blank = Layers(depth=layers.depth, subject_alpha=layers.subject_alpha, background=white)
    for step in (0.5, 1.0):
        frame = composite(
            blank,
            white,
            *_camera(pan=pan * step, zoom=zoom**step, size=SIDE),
            shift=(pan * step, 0.0),
            zoom=zoom**step,
            strength=1.0,
        )
        assert frame.shape == (SIDE, SIDE, 3) and frame.dtype == np.uint8
        assert frame.min() == 255


def test_uncovered_areas_show_the_clean_plate(photo: np.ndarray, layers: Layers) -> None:
    # Paint the plate green: whatever the moving subject uncovers turns green, nothing else does.
    green = np.zeros_like(photo)
    green[..., 1] = 255
    plate = np.where(layers.subject_alpha[..., None] > 0, green, photo)
    marked = Layers(depth=layers.depth, subject_alpha=layers.subject_alpha, background=plate)
    pan = 20.0
    maps = _camera(pan=pan)
    frame = composite(marked, photo, *maps, shift=(pan, 0.0), zoom=1.0, strength=1.0)
    uncovered = np.abs(frame.astype(int) - (0, 255, 0)).max(axis=2) < 10
    subject_now = cv2.remap(layers.subject_alpha, *maps, cv2.INTER_LINEAR)
    assert uncovered.sum() > 0.5 * pan * 100  # a band beside a subject ~150 px tall
    assert subject_now[uncovered].max() < 0.5
    still = composite(marked, photo, *maps, shift=(pan, 0.0), zoom=1.0, strength=0.0)
    assert not (np.abs(still.astype(int) - (0, 255, 0)).max(axis=2) < 10).any()


def test_offsets_are_applied_in_source_coordinates(photo: np.ndarray, layers: Layers) -> None:
    dx = np.full(photo.shape[:2], -5.0, np.float32)
    dy = np.zeros(photo.shape[:2], np.float32)
    maps = _camera()
    moved = composite(
        layers, photo, *maps, shift=(0.0, 0.0), zoom=1.0, strength=1.0, offsets=(dx, dy)
    )
    expected = cv2.remap(photo, maps[0] - 5.0, maps[1], cv2.INTER_CUBIC)
    assert np.abs(moved.astype(int) - expected).max() <= 1


def test_composite_is_deterministic(photo: np.ndarray, layers: Layers) -> None:
    maps = _camera(pan=7.5, zoom=1.1)
    a = composite(layers, photo, *maps, shift=(7.5, 0.0), zoom=1.1, strength=0.7)
    b = composite(layers, photo, *maps, shift=(7.5, 0.0), zoom=1.1, strength=0.7)
    assert np.array_equal(a, b)


def test_a_face_box_cuts_out_the_whole_person(photo: np.ndarray) -> None:
    face = (88, 38, 37, 47)  # what a face detector finds in the 256 px astronaut
    alpha = estimate_layers(photo, subject_box=face, seed=2).subject_alpha
    assert alpha[55:70, 95:115].min() == 1.0  # the face
    assert alpha[12:20, 100:120].mean() > 0.9  # the hair above it
    assert alpha[170:200, 60:110].mean() > 0.95  # the suit below it
    assert alpha[:40, 200:].max() == 0.0 and alpha[100:140, :15].max() == 0.0  # the wall, flag


def test_a_box_inside_the_subject_still_finds_it(photo: np.ndarray) -> None:
    # A saliency core or a torso: GrabCut alone gives up, grown boxes recover the person.
    alpha = estimate_layers(photo, subject_box=(64, 64, 128, 128), seed=1).subject_alpha
    assert alpha[170:200, 60:110].mean() > 0.95  # the suit
    assert alpha[55:70, 95:115].mean() > 0.95  # the face, outside the box
    assert alpha[:40, 200:].max() == 0.0
