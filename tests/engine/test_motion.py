"""Motion control: the camera object, the prompt reader, seeds, intensity and easing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stillmotion.engine import validate_camera
from stillmotion.engine.motion import (
    MOVES,
    camera_at,
    ease,
    fit_plan,
    plan_motion,
    read_prompt,
)

PROMPTS = [
    ("slow push in on her face", {"push_in"}),
    ("pan left across the skyline", {"pan_left"}),
    ("drone orbit", {"orbit"}),
    ("dolly zoom", {"dolly_zoom"}),
    ("handheld", {"handheld"}),
    ("static shot", set()),
    ("tilt up to the sky", {"tilt_up"}),
    ("zoom out to reveal the city", {"pull_out"}),
    ("truck right along the street", {"truck_right"}),
    ("crane shot rising over the forest", {"crane_up"}),
    ("dutch angle roll", {"roll"}),
    ("aerial flyover of the coast", {"drone"}),
    ("camera orbits around the statue", {"orbit"}),
    ("quick whip pan right", {"pan_right"}),
    ("tracking shot following the runner", {"truck_right"}),
    ("slowly tilt down to the river", {"tilt_down"}),
    ("pull back from the flowers", {"pull_out"}),
    ("vertigo effect down the hallway", {"dolly_zoom"}),
    ("locked-off tripod shot of waves", set()),
    ("shaky handheld walk through the market", {"handheld"}),
    ("close-up of the eyes", {"push_in"}),
    ("the camera slides left past the trees", {"truck_left"}),
    ("pedestal down to the table", {"pedestal_down"}),
    ("push in while panning left", {"push_in", "pan_left"}),
    ("gentle handheld push in", {"push_in", "handheld"}),
    ("look up at the tower", {"tilt_up"}),
    ("circling around the car", {"orbit"}),
    ("a cat sleeping on a sofa", set()),
    # what the subject does is not a camera move
    ("steam rising from the coffee", set()),
    ("snow descending on the village", set()),
    ("a dog shaking off water", set()),
    ("a spinning carousel at night", set()),
    ("leaves blowing around the tree", set()),
    ("a storm approaching the coast", set()),
    ("slow push in, steam rising", {"push_in"}),
    ("the camera rises above the crowd", {"pedestal_up"}),
]


@pytest.mark.parametrize(("prompt", "moves"), PROMPTS)
def test_prompt_table(prompt, moves):
    assert set(read_prompt(prompt).moves) == moves


def test_static_prompt_plans_a_still_camera_and_no_prompt_lets_the_seed_choose():
    plan = plan_motion(prompt="static shot", camera=None, intensity="medium", seed=1, loop=False)
    assert plan.source == "static"
    assert all(v == 0 for v in plan.camera.values())
    chosen = {
        plan_motion(prompt="a cat", camera=None, intensity="medium", seed=s, loop=False).moves
        for s in range(12)
    }
    assert len(chosen) >= 3  # the seed picks among several fitting moves
    again = plan_motion(prompt="a cat", camera=None, intensity="medium", seed=5, loop=False)
    first = plan_motion(prompt="a cat", camera=None, intensity="medium", seed=5, loop=False)
    assert again.moves == first.moves and again.source == "seed"


def test_speed_words_and_intensity_scale_the_amplitude():
    def zoom(prompt: str, intensity: str) -> float:
        p = plan_motion(prompt=prompt, camera=None, intensity=intensity, seed=0, loop=False)
        return p.camera["zoom"]

    assert zoom("push in", "low") < zoom("push in", "medium") < zoom("push in", "high")
    assert (
        zoom("slow push in", "medium") < zoom("push in", "medium") < zoom("fast push in", "medium")
    )
    assert zoom("push in", "medium") == MOVES["push_in"]["zoom"]
    cam = {"pan": 4}
    low = plan_motion(prompt="", camera=cam, intensity="low", seed=0, loop=False)
    high = plan_motion(prompt="", camera=cam, intensity="high", seed=0, loop=False)
    assert low.camera["pan"] == 2 and high.camera["pan"] == pytest.approx(6.4)


def test_camera_object_wins_over_the_prompt():
    plan = plan_motion(
        prompt="pan left", camera={"zoom": 3}, intensity="medium", seed=0, loop=False
    )
    assert plan.source == "camera"
    assert plan.camera["zoom"] == 3 and plan.camera["pan"] == 0


def test_validate_camera_normalises_and_explains():
    assert validate_camera({"zoom": 3, "pan": -2.5}) == {
        "horizontal": 0.0, "vertical": 0.0, "pan": -2.5, "tilt": 0.0, "zoom": 3.0, "roll": 0.0,
        "static": False,
    }  # fmt: skip
    for bad, words in [
        ({"zoom": 10.5}, "camera.zoom"),
        ({"pan": "left"}, "camera.pan"),
        ({"tilt": True}, "camera.tilt"),
        ({"dolly": 2}, "unknown"),
        ({"static": "yes"}, "camera.static"),
        ({"roll": float("nan")}, "camera.roll"),
    ]:
        with pytest.raises(ValueError, match=words):
            validate_camera(bad)


def test_ease_has_zero_velocity_at_both_ends_and_loops_close():
    eps = 1e-4
    assert ease(0, loop=False) == 0 and ease(1, loop=False) == 1
    assert (ease(eps, loop=False) - ease(0, loop=False)) / eps < 1e-3
    assert (ease(1, loop=False) - ease(1 - eps, loop=False)) / eps < 1e-3
    assert ease(0, loop=True) == pytest.approx(ease(1, loop=True), abs=1e-12)


def test_plan_paths_are_continuous_and_a_loop_returns_home():
    plan = plan_motion(prompt="handheld orbit", camera=None, intensity="high", seed=3, loop=True)
    plan = fit_plan(plan, aspect=16 / 9, duration=5, frames=120, subject=None)
    states = [camera_at(plan, i / 120, duration=5, aspect=16 / 9) for i in range(121)]
    xs = np.array([s.cx for s in states])
    zs = np.array([s.zoom for s in states])
    assert abs(xs[0] - xs[-1]) < 1e-9 and abs(zs[0] - zs[-1]) < 1e-9
    # no jumps anywhere: acceleration stays under 1 px per frame² at 1920 px wide
    assert np.abs(np.diff(xs, 2)).max() < 1 / 1920
    assert np.abs(np.diff(np.log(zs), 2)).max() < 1 / 1920
    assert plan.overscan >= 1.0


def test_fitting_keeps_the_view_inside_the_canvas_and_the_subject_in_view():
    plan = plan_motion(
        prompt="", camera={"pan": 10, "roll": 10, "zoom": -5}, intensity="high", seed=0, loop=False
    )
    box = (0.4, 0.2, 0.6, 0.5)
    plan = fit_plan(plan, aspect=16 / 9, duration=5, frames=120, subject=box)
    assert 0 < plan.amplitude < 1  # the full move would lose the subject
    for i in range(0, 121, 5):
        s = camera_at(plan, i / 120, duration=5, aspect=16 / 9)
        half_w, half_h = 0.5 / s.zoom, 0.5 / s.zoom
        reach = math.hypot(half_w * 16 / 9, half_h)
        assert s.zoom >= 1.0 and reach < 2  # sanity of the fitted view
