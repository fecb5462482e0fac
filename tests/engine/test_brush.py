"""The motion brush: parsing, and what it does to a real photograph with a still camera."""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from stillmotion.engine.brush import BrushField, BrushRegion, parse_regions
from stillmotion.engine.depth import estimate_layers
from stillmotion.engine.parallax import composite

SIDE = 256
FRAMES = 24
# In normalized coordinates of the 256 px astronaut: her suit (left) and the wall (top right).
SUIT = [[0.12, 0.5], [0.5, 0.5], [0.5, 0.95], [0.12, 0.95]]
WALL = [[0.55, 0.02], [0.98, 0.02], [0.98, 0.4], [0.55, 0.4]]


def _photo() -> np.ndarray:
    return cv2.resize(data.astronaut(), (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def _png_uri(mask: np.ndarray, *, mode: str = "L") -> str:
    buffer = io.BytesIO()
    Image.fromarray(mask, mode=mode).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _shift(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    a = cv2.cvtColor(before, cv2.COLOR_RGB2GRAY).astype(np.float64)
    b = cv2.cvtColor(after, cv2.COLOR_RGB2GRAY).astype(np.float64)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F))
    return dx, dy


class _StillCamera:
    """Renders brush frames through the parallax compositor with identity camera maps."""

    def __init__(self, photo: np.ndarray) -> None:
        self.photo = photo
        self.layers = estimate_layers(photo, subject_box=None, seed=1)
        self.maps = np.indices(photo.shape[:2], dtype=np.float32)[::-1]

    def frame(self, field: BrushField, i: int) -> np.ndarray:
        return composite(
            self.layers,
            self.photo,
            self.maps[0],
            self.maps[1],
            shift=(0.0, 0.0),
            zoom=1.0,
            strength=1.0,
            offsets=field.displacement(i),
        )


@pytest.fixture(scope="module")
def camera() -> _StillCamera:
    return _StillCamera(_photo())


def _inside(polygon: list[list[float]]) -> np.ndarray:
    return BrushRegion(polygon=tuple(map(tuple, polygon))).coverage(height=SIDE, width=SIDE) > 0


def _patch(polygon: list[list[float]], *, margin: int = 12) -> tuple[slice, slice]:
    """The polygon's bounding box (a rectangle here), shrunk past the feathered edge."""
    xs = [round(x * SIDE) for x, _ in polygon]
    ys = [round(y * SIDE) for _, y in polygon]
    return slice(min(ys) + margin, max(ys) - margin), slice(min(xs) + margin, max(xs) - margin)


def test_regions_move_their_way_and_nothing_else_moves(camera: _StillCamera) -> None:
    regions = parse_regions(
        [{"mask": SUIT, "horizontal": 10}, {"mask": WALL, "vertical": 10, "ambient": 0}]
    )
    field = BrushField(regions, height=SIDE, width=SIDE, frames=FRAMES, loop=False, intensity=1.0)
    first = camera.frame(field, 0)
    assert np.array_equal(first, camera.photo)
    outside = ~(_inside(SUIT) | _inside(WALL))
    travel = 0.004 / 24 * SIDE * 10 * 20  # 4 % of the side per second at 10, for 20 frames
    later = camera.frame(field, 20)
    change = np.abs(later.astype(float) - first)[outside].mean()
    assert change < 1 / 255
    dx, dy = _shift(first[_patch(SUIT)], later[_patch(SUIT)])
    assert dx == pytest.approx(travel, abs=1.0) and abs(dy) < 0.5  # right
    dx, dy = _shift(first[_patch(WALL)], later[_patch(WALL)])
    assert dy == pytest.approx(-travel, abs=1.0) and abs(dx) < 0.5  # up
    assert _shift(first[_patch(SUIT)], camera.frame(field, 10)[_patch(SUIT)])[0] == pytest.approx(
        travel / 2, abs=0.7
    )


def test_negative_values_move_the_other_way(camera: _StillCamera) -> None:
    regions = parse_regions([{"mask": SUIT, "horizontal": -6, "vertical": -6}])
    field = BrushField(regions, height=SIDE, width=SIDE, frames=FRAMES, loop=False, intensity=1.0)
    dx, dy = _shift(camera.photo[_patch(SUIT)], camera.frame(field, 20)[_patch(SUIT)])
    assert dx < -2 and dy > 2  # left and down


def test_proximity_expands_the_region(camera: _StillCamera) -> None:
    square = [[0.15, 0.45], [0.55, 0.45], [0.55, 0.95], [0.15, 0.95]]
    regions = parse_regions([{"mask": square, "proximity": 10}])
    field = BrushField(regions, height=SIDE, width=SIDE, frames=48, loop=False, intensity=2.0)
    later = camera.frame(field, 47)
    # Growing about its centre (x = 89): the left third drifts left, the right third right.
    rows = _patch(square, margin=10)[0]
    left = (rows, slice(48, 79))
    right = (rows, slice(100, 131))
    assert _shift(camera.photo[left], later[left])[0] < -3.0
    assert _shift(camera.photo[right], later[right])[0] > 3.0
    outside = ~_inside(square)
    assert np.abs(later.astype(float) - camera.photo)[outside].mean() < 1 / 255


def test_a_loop_closes_on_the_first_frame(camera: _StillCamera) -> None:
    regions = parse_regions(
        [
            {"mask": SUIT, "horizontal": 8, "proximity": 4},
            {"mask": WALL, "vertical": -5, "ambient": 7},
        ]
    )
    field = BrushField(regions, height=SIDE, width=SIDE, frames=FRAMES, loop=True, intensity=1.0)
    first = camera.frame(field, 0)
    after_last = camera.frame(field, FRAMES)
    assert _psnr(first, after_last) >= 35
    # It did move in between, and eased back: the last frame is close to the first, not a jump.
    middle = camera.frame(field, FRAMES // 2)
    assert _psnr(first, middle) < 30
    assert _psnr(first, camera.frame(field, FRAMES - 1)) > _psnr(first, middle) + 10
    assert _shift(first[_patch(SUIT)], camera.frame(field, 6)[_patch(SUIT)])[0] > 0.5


def test_offsets_are_exactly_zero_outside_and_feathered_inside() -> None:
    regions = parse_regions([{"mask": SUIT, "horizontal": 5, "ambient": 5, "proximity": -3}])
    field = BrushField(regions, height=SIDE, width=SIDE, frames=FRAMES, loop=False, intensity=1.5)
    dx, dy = field.displacement(12)
    inside = _inside(SUIT)
    assert not dx[~inside].any() and not dy[~inside].any()
    assert dx.dtype == np.float32 and dx.shape == (SIDE, SIDE)
    assert not field.displacement(0)[0].any()
    flow = parse_regions([{"mask": SUIT, "horizontal": 5}])
    field = BrushField(flow, height=SIDE, width=SIDE, frames=FRAMES, loop=False, intensity=1.0)
    row = field.displacement(12)[0][180, :]  # across the region's left edge: rises from 0
    edge = round(0.12 * SIDE)
    ramp = np.abs(row[edge : edge + 8])
    assert ramp[0] < ramp[3] < ramp[7] and ramp[0] < 0.2 * ramp[7]


def test_a_long_slide_is_feathered_wider() -> None:
    flow = parse_regions([{"mask": SUIT, "horizontal": 10}])
    edge = round(0.12 * SIDE)

    def ramp(frames: int) -> np.ndarray:
        field = BrushField(flow, height=SIDE, width=SIDE, frames=frames, loop=False, intensity=1)
        row = np.abs(field.displacement(frames - 1)[0][180, :])
        return row[edge : edge + 40] / row.max()

    short, long = ramp(12), ramp(120)  # travels of 5 and 51 px
    assert short[6] > 0.999  # full speed 6 px inside the edge …
    assert long[6] < 0.5 and long[30] > 0.999  # … or, sliding far, only 30 px inside


def test_same_regions_same_offsets_and_intensity_scales() -> None:
    raw = [{"mask": SUIT, "horizontal": 3, "ambient": 6}, {"mask": WALL, "proximity": 5}]
    fields = [
        BrushField(parse_regions(raw), height=64, width=80, frames=10, loop=True, intensity=k)
        for k in (1.0, 1.0, 0.5, 0.0)
    ]
    a, b, half, none = (field.displacement(3) for field in fields)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.abs(half[0]).max() < np.abs(a[0]).max()
    assert not none[0].any() and not none[1].any()


def test_png_masks_are_scaled_to_the_source(camera: _StillCamera) -> None:
    mask = np.zeros((50, 40), np.uint8)  # another size and ratio than the source
    mask[25:48, 5:20] = 255
    transparent = np.zeros((50, 40, 4), np.uint8)
    transparent[..., :3] = 255  # white but fully transparent: not brushed
    transparent[25:48, 5:20, 3] = 255
    for uri in (_png_uri(mask), _png_uri(transparent, mode="RGBA")):
        (region,) = parse_regions([{"mask": uri, "horizontal": 10}])
        coverage = region.coverage(height=SIDE, width=SIDE)
        assert coverage.shape == (SIDE, SIDE)
        assert coverage[160:230, 50:110].min() == 1.0
        assert coverage[:120].max() == 0.0 and coverage[:, 140:].max() == 0.0
    field = BrushField([region], height=SIDE, width=SIDE, frames=FRAMES, loop=False, intensity=1)
    later = camera.frame(field, 20)
    assert _shift(camera.photo[165:225, 50:110], later[165:225, 50:110])[0] > 5


def test_parse_accepts_the_documented_shapes() -> None:
    regions = parse_regions(
        [
            {"mask": SUIT},
            {"mask": [(0, 0), (1, 0), (1, 1)], "horizontal": -10, "vertical": 10.0},
            {"mask": _png_uri(np.full((8, 8), 255, np.uint8)), "proximity": 2, "ambient": -3},
        ]
    )
    assert [r.horizontal for r in regions] == [0.0, -10.0, 0.0]
    assert regions[0].polygon is not None and regions[2].bitmap is not None
    assert parse_regions([]) == []


BAD = [
    ("not a list", "expected a list"),
    ([{"mask": SUIT}] * 6, "6 regions; at most 5"),
    (["square"], "motionBrush[0]: expected an object"),
    ([{"horizontal": 2}], "motionBrush[0].mask: required"),
    ([{"mask": SUIT, "speed": 2}], "unknown key 'speed'"),
    (
        [{"mask": SUIT}, {"mask": SUIT, "horizontal": 11}],
        "motionBrush[1].horizontal: 11 is outside",
    ),
    ([{"mask": SUIT, "vertical": -10.5}], "vertical: -10.5 is outside -10 … 10"),
    ([{"mask": SUIT, "proximity": True}], "proximity: expected a number"),
    ([{"mask": SUIT, "ambient": "3"}], "ambient: expected a number"),
    ([{"mask": SUIT, "ambient": float("nan")}], "ambient: nan is outside"),
    ([{"mask": [[0, 0], [1, 1]]}], "at least 3 points, got 2"),
    ([{"mask": [[0, 0], [1, 1], [1.2, 0]]}], "mask[2]: [1.2, 0] is outside 0 … 1"),
    ([{"mask": [[0, 0], [1, 1], [0.5]]}], "mask[2]: expected [x, y]"),
    ([{"mask": [[0, 0], [1, 1], ["a", 0]]}], "coordinates must be numbers"),
    ([{"mask": "https://example.com/m.png"}], "must be a data URI"),
    ([{"mask": "data:image/png;base64,@@@"}], "not valid base64"),
    ([{"mask": "data:image/png;base64," + base64.b64encode(b"nope").decode()}], "readable PNG"),
    ([{"mask": _png_uri(np.zeros((8, 8), np.uint8))}], "mask is empty"),
    ([{"mask": 42}], "expected a PNG data URI or a list"),
]


@pytest.mark.parametrize(("raw", "message"), BAD)
def test_parse_rejects_bad_input_clearly(raw: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_regions(raw)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_parse_rejects_a_jpeg_mask() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(buffer, format="JPEG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    with pytest.raises(ValueError, match=r"motionBrush\[0\]\.mask: the mask is JPEG, not PNG"):
        parse_regions([{"mask": uri}])


def test_a_16_bit_gray_mask_is_scaled_not_clipped_to_white() -> None:
    """Pillow's own I;16 → L conversion clips, so a dark 16-bit mask came out all brushed."""
    mask = np.zeros((64, 64), np.uint16)
    mask[:, :32] = 65535  # the left half is brushed
    mask[:, 32:] = 5000  # the right half nearly black: 5000 / 257 ≈ 19 of 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode.startswith("I;16")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    (region,) = parse_regions([{"mask": uri, "horizontal": 5}])
    assert region.bitmap[:, :32].min() == 255
    assert region.bitmap[:, 32:].max() == 19
