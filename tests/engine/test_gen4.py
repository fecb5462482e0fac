"""gen-4 end to end: parallax measured in the decoded video, no holes, the motion brush with a
still camera, loops that close, and determinism."""

from __future__ import annotations

import itertools
import sys

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from stillmotion.engine import RenderSpec, render
from stillmotion.engine.metrics import decode_gray, decode_rgb

SIZE = (384, 216)
# Regions of the 16:9 astronaut frame, in output pixels: her face, and the far wall top right.
FACE = (slice(20, 84), slice(130, 194))
FAR = (slice(0, 48), slice(300, 384))
# The brushed region: the model shuttle, top right of the picture (normalized source points).
SHUTTLE = [[0.62, 0.0], [1.0, 0.0], [1.0, 0.55], [0.62, 0.55]]


def _render_module():
    return sys.modules["stillmotion.engine.render"]


def _shift(a: np.ndarray, b: np.ndarray, region: tuple[slice, slice]) -> np.ndarray:
    h = region[0].stop - region[0].start
    w = region[1].stop - region[1].start
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    return np.array(cv2.phaseCorrelate(a[region], b[region], window)[0])


def _travel(frames: list[np.ndarray], region: tuple[slice, slice]) -> np.ndarray:
    """On-screen travel of the content at `region`, summed frame to frame."""
    return sum(_shift(a, b, region) for a, b in itertools.pairwise(frames))


@pytest.fixture(scope="module")
def truck_clips(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("truck")
    image = Image.fromarray(data.astronaut())
    clips = {}
    for version in ("gen-3", "gen-4"):
        out = tmp / f"{version}.mp4"
        spec = RenderSpec(
            version=version, width=SIZE[0], height=SIZE[1], duration=2, camera={"horizontal": 8}
        )
        result = render(image, spec, out)
        clips[version] = (list(decode_gray(out)), result)
    return clips


def test_near_and_far_move_at_different_rates_only_with_parallax(truck_clips):
    ratios = {}
    for version, (frames, _) in truck_clips.items():
        near, far = _travel(frames, FACE), _travel(frames, FAR)
        assert near[0] < -40 and far[0] < 0  # trucking right slides everything left...
        ratios[version] = far[0] / near[0]
    assert truck_clips["gen-4"][1].plan["parallax"] is True
    assert ratios["gen-3"] > 0.8  # ...at one rate in 2-D
    assert ratios["gen-4"] < 0.65  # ...while the far wall lags the subject in gen-4


def test_no_frame_has_unfilled_pixels(tmp_path):
    # A picture with no dark pixels: a hole (black, or the encoder's black) would stand out.
    picture = np.clip(data.astronaut().astype(np.int16), 40, 255).astype(np.uint8)
    out = tmp_path / "holes.mp4"
    spec = RenderSpec(
        version="gen-4",
        width=SIZE[0],
        height=SIZE[1],
        duration=2,
        camera={"horizontal": 10, "zoom": 5, "roll": 3},
    )
    render(Image.fromarray(picture), spec, out)
    count = 0
    for frame in decode_rgb(out):
        # an unfilled pixel is black; every source pixel has all channels >= 40
        assert int(frame.max(axis=2).min()) >= 20, f"hole in frame {count}"
        count += 1
    assert count == 48


def test_brush_moves_only_the_brushed_region(tmp_path):
    image = Image.fromarray(data.astronaut())
    out = tmp_path / "brush.mp4"
    spec = RenderSpec(
        version="gen-4",
        aspect_ratio="1:1",
        width=256,
        height=256,
        duration=2,
        camera={"static": True},
        motion_brush=[{"mask": SHUTTLE, "horizontal": 10}],
    )
    result = render(image, spec, out)
    assert result.plan["brushRegions"] == 1
    frames = [f.astype(np.float32) for f in decode_rgb(out)]
    outside = np.ones((256, 256), bool)
    outside[: int(0.55 * 256) + 8, int(0.62 * 256) - 8 :] = False  # the region, plus a margin
    for frame in frames[1:]:
        change = np.abs(frame - frames[0])[outside].mean()
        assert change < 1.0, change
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    inside = (slice(10, 130), slice(175, 250))
    dx, dy = _travel(gray, inside)
    assert dx > 3 and abs(dy) < dx / 2  # the shuttle moved right


def test_brushed_loop_flows_back_into_the_first_frame(tmp_path):
    image = Image.fromarray(data.astronaut())
    brush = [{"mask": SHUTTLE, "vertical": 6, "ambient": 5}]
    spec = RenderSpec(
        version="gen-4",
        aspect_ratio="1:1",
        width=192,
        height=192,
        duration=2,
        loop=True,
        prompt="slow orbit",
        motion_brush=brush,
    )
    scene = _render_module()._Scene(np.asarray(image), spec, 192, 192)
    first = scene.frame_rgb(0).astype(np.float64)
    after_last = scene.frame_rgb(scene.frames).astype(np.float64)
    mse = np.mean((first - after_last) ** 2)
    psnr = 10 * np.log10(255**2 / max(mse, 1e-12))
    assert psnr >= 35, psnr
    middle = scene.frame_rgb(scene.frames // 2).astype(np.float64)
    assert np.mean((first - middle) ** 2) > 4 * max(mse, 1e-3)  # it did move in between


def test_gen4_is_deterministic_for_the_same_seed(tmp_path):
    image = Image.fromarray(data.coffee())
    spec = RenderSpec(
        version="gen-4", width=192, height=108, duration=1, seed=9, prompt="handheld, steam rising"
    )
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    render(image, spec, a)
    render(image, spec, b)
    for fa, fb in zip(decode_gray(a), decode_gray(b), strict=True):
        assert np.array_equal(fa, fb)


def test_bad_brush_is_a_value_error_before_any_work(tmp_path):
    image = Image.fromarray(data.astronaut())
    for bad in (
        [{"mask": [[0, 0], [1, 0]], "horizontal": 3}],  # not a polygon
        [{"mask": SHUTTLE, "horizontal": 30}],
        [{"mask": SHUTTLE}] * 6,
    ):
        with pytest.raises(ValueError):
            render(image, RenderSpec(version="gen-4", motion_brush=bad), tmp_path / "x.mp4")
    assert list(tmp_path.iterdir()) == []
