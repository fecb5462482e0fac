"""Ambient life: which words ask for it, and that it stirs only the areas asked for, subtly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from stillmotion.engine.ambient import KINDS, AmbientField, ambient_kinds

FRAMES = 24


def _rocket(width: int = 320) -> np.ndarray:
    """The launch pad at dusk: sky in the upper 85 %, lit ground along the bottom."""
    size = (width, round(width * 427 / 640))
    return cv2.resize(data.rocket(), size, interpolation=cv2.INTER_CUBIC)


def _warp(image: np.ndarray, offsets: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    ys, xs = np.indices(image.shape[:2], dtype=np.float32)
    return cv2.remap(image, xs + offsets[0], ys + offsets[1], cv2.INTER_CUBIC)


@pytest.mark.parametrize(
    ("prompt", "kinds"),
    [
        ("Waves roll onto the beach under a cloudy sky", {"water", "clouds"}),
        ("steam rising from a cup of coffee", {"smoke"}),
        ("Leaves rustle in the breeze", {"leaves"}),
        ("a campfire's flames at night, her hair blowing", {"fire", "hair"}),
        ("slow push in on her face", set()),
        ("a seashell, a firefly and a treehouse", set()),  # words, not substrings
        ("FOG over the RIVER", {"smoke", "water"}),
        ("", set()),
    ],
)
def test_prompt_words_name_the_kinds(prompt: str, kinds: set[str]) -> None:
    assert ambient_kinds(prompt) == kinds
    assert ambient_kinds(prompt) <= KINDS


@pytest.mark.parametrize("width", [320, 1280])  # 1280: fields held small, upsampled per frame
def test_clouds_drift_the_sky_and_leave_the_ground(width: int) -> None:
    image = _rocket(width)
    height, width = image.shape[:2]
    field = AmbientField(image, kinds={"clouds"}, frames=FRAMES, loop=False, seed=3, intensity=1.0)
    ground = slice(round(0.8 * height), None)
    sky = slice(0, round(0.5 * height))
    for i in (0, 6, 23):
        dx, dy = field.displacement(i)
        assert dx.shape == (height, width) and dx.dtype == np.float32
        assert not dx[ground].any() and not dy[ground].any()
    dx, dy = field.displacement(23)
    assert np.abs(dx[sky]).mean() > 0.1 * width / 320  # the sky moves …
    assert np.hypot(dx, dy).max() < 0.01 * min(height, width)  # … by under 1 % of the frame
    frame = _warp(image, (dx, dy))
    change = np.abs(frame.astype(float) - image)
    assert change[ground].mean() == 0.0
    assert 0.0 < change[sky].mean() < 4.0


def test_water_ripples_only_low_in_the_frame() -> None:
    image = _rocket()
    height = image.shape[0]
    field = AmbientField(image, kinds={"water"}, frames=FRAMES, loop=True, seed=5, intensity=1.0)
    moved = np.zeros(image.shape[:2], bool)
    for i in range(0, FRAMES, 4):
        dx, dy = field.displacement(i)
        assert not dx[: round(0.3 * height)].any() and not dy[: round(0.3 * height)].any()
        moved |= (dx != 0) | (dy != 0)
    assert moved[round(0.6 * height) :].mean() > 0.3
    # Ripples: sideways motion that changes sign across rows, not a slide.
    dx, _ = field.displacement(FRAMES // 4)
    low = dx[round(0.6 * height) :]
    column = low[:, np.abs(low).sum(axis=0).argmax()]
    assert column.max() > 0.1 and column.min() < -0.1


def test_kinds_absent_from_the_photo_move_nothing() -> None:
    image = _rocket()  # no foliage at the launch pad
    field = AmbientField(image, kinds={"leaves"}, frames=FRAMES, loop=False, seed=1, intensity=1.0)
    dx, dy = field.displacement(12)
    assert (np.hypot(dx, dy) > 0.05).mean() < 0.02


def test_nothing_asked_nothing_moves() -> None:
    image = _rocket()
    for kinds, intensity in ((set(), 1.0), ({"clouds", "water"}, 0.0)):
        field = AmbientField(
            image, kinds=kinds, frames=FRAMES, loop=False, seed=0, intensity=intensity
        )
        dx, dy = field.displacement(10)
        assert not dx.any() and not dy.any()


@pytest.mark.parametrize("kinds", [{"water"}, {"clouds"}, {"smoke", "fire"}, {"hair", "leaves"}])
def test_a_loop_returns_to_the_still(kinds: set[str]) -> None:
    image = cv2.resize(data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA)
    field = AmbientField(image, kinds=kinds, frames=FRAMES, loop=True, seed=9, intensity=1.0)
    start, end = field.displacement(0), field.displacement(FRAMES)
    assert not start[0].any() and not start[1].any()
    assert np.abs(end[0]).max() < 1e-4 and np.abs(end[1]).max() < 1e-4
    middle = field.displacement(FRAMES // 2 - 1)
    assert np.abs(middle[0]).max() + np.abs(middle[1]).max() > 0.05


def test_same_seed_same_motion_other_seed_other_motion() -> None:
    image = cv2.resize(data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA)

    def offsets(seed: int) -> np.ndarray:
        field = AmbientField(
            image, kinds={"hair", "smoke"}, frames=FRAMES, loop=False, seed=seed, intensity=1.0
        )
        return np.stack(field.displacement(7))

    assert np.array_equal(offsets(4), offsets(4))
    assert not np.array_equal(offsets(4), offsets(5))


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown ambient kinds \\['lava'\\]"):
        AmbientField(_rocket(), kinds={"lava"}, frames=FRAMES, loop=False, seed=0, intensity=1.0)
