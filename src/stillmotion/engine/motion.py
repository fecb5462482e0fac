"""Camera motion: the `camera` object, the prompt reader, and the eased camera path.

Sign convention (API.md §2 `camera`; every value -10 … 10, describing what the *camera* does):

=============  =====================================  ===================================
value          positive                               what the picture does on screen
=============  =====================================  ===================================
horizontal     camera trucks right                    content slides left (with parallax)
vertical       camera rises (pedestal up)             content slides down (with parallax)
pan            camera turns right                     content slides left (no parallax)
tilt           camera tilts up                        content slides down (no parallax)
zoom           camera pushes in                       content grows
roll           camera rolls clockwise                 content turns counter-clockwise
=============  =====================================  ===================================

Negative values do the opposite; `static: true` holds the camera still. Magnitudes at
`motionIntensity` medium: 10 moves the view by a fifth of the frame (horizontal, vertical,
pan, tilt), doubles the scale (zoom) or turns it 15° (roll) over the clip. `low` halves the
amplitude, `high` makes it 1.6x. Horizontal/pan (and vertical/tilt) look alike in 2-D; gen-4
tells them apart by parallax.

All paths are eased with continuous velocity: a cosine ease-in/out from rest to rest, or with
`loop` a full cosine that goes out and comes back so the last frame flows into the first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from stillmotion import options

AXES = options.CAMERA_AXES
INTENSITY = {"low": 0.5, "medium": 1.0, "high": 1.6}

_SHIFT_PER_UNIT = 0.02  # fraction of the frame per camera unit (10 -> 0.2)
ZOOM_PER_UNIT = 0.0693  # ln(2) / 10: zoom 10 doubles the scale
_ROLL_PER_UNIT = math.radians(1.5)
_HANDHELD_AMPLITUDE = 0.004  # fraction of the frame
_HANDHELD_ROLL = math.radians(0.25)


def validate_camera(camera: dict) -> dict:
    """Normalise an API `camera` object; raises ValueError with a message a user can act on.

    Returns a dict with every axis as a float (missing axes 0) and `static` as a bool.
    """
    if not isinstance(camera, dict):
        raise ValueError("camera must be an object")
    unknown = set(camera) - {*AXES, "static"}
    if unknown:
        raise ValueError(
            f"camera has unknown field(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(AXES)}, static"
        )
    out: dict = {}
    for axis in AXES:
        value = camera.get(axis, 0)
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"camera.{axis} must be a number from -10 to 10")
        if not math.isfinite(value) or not options.CAMERA_MIN <= value <= options.CAMERA_MAX:
            raise ValueError(
                f"camera.{axis} must be from {options.CAMERA_MIN} to {options.CAMERA_MAX}, "
                f"got {value}"
            )
        out[axis] = float(value)
    static = camera.get("static", False)
    if static is None:
        static = False
    if not isinstance(static, bool):
        raise ValueError("camera.static must be true or false")
    out["static"] = static
    return out


# --- the prompt reader -------------------------------------------------------------------

# Each named move: camera values at medium intensity, plus flags. Order matters: the reader
# takes the first pattern that matches in each group, so specific phrases come first.
MOVES: dict[str, dict] = {
    "static": {},
    "push_in": {"zoom": 4.0},
    "pull_out": {"zoom": -4.0},
    "pan_left": {"pan": -5.0},
    "pan_right": {"pan": 5.0},
    "tilt_up": {"tilt": 4.0},
    "tilt_down": {"tilt": -4.0},
    "truck_left": {"horizontal": -5.0},
    "truck_right": {"horizontal": 5.0},
    "pedestal_up": {"vertical": 4.0},
    "pedestal_down": {"vertical": -4.0},
    "orbit": {"horizontal": 5.0, "zoom": 1.5, "roll": -1.0},
    "dolly_zoom": {"zoom": 5.0},
    "roll": {"roll": 4.0},
    "handheld": {"zoom": 0.8},
    "drone": {"zoom": 3.0, "vertical": 2.5, "tilt": -1.0},
    "crane_up": {"vertical": 5.0, "tilt": -1.5},
    "crane_down": {"vertical": -5.0, "tilt": 1.5},
}

_W = r"\b"
# (pattern, move). Checked in order; the first match of each axis family wins.
_CAM = r"(?:the )?(?:camera|we|shot|lens)"  # verbs a subject could do count only after these
_PHRASES: list[tuple[str, str]] = [
    (
        r"static|locked[- ]off|tripod|still (?:shot|camera|frame)|"
        r"no (?:camera )?(?:movement|motion)|"
        r"fixed (?:shot|camera)",
        "static",
    ),
    (r"dolly[- ]zoom|vertigo|zolly|contra[- ]zoom", "dolly_zoom"),
    (
        r"orbit|arc(?:ing)? (?:shot|around|left|right)|circl\w* (?:around|the)|"
        rf"{_CAM} (?:goes|moves|swings|rotates|travels) around|360",
        "orbit",
    ),
    (r"drone|aerial|fly ?over|flying over|bird'?s[- ]eye", "drone"),
    (rf"crane (?:shot )?down|boom down|{_CAM} descends|descending shot", "crane_down"),
    (r"crane|boom up|jib", "crane_up"),
    (r"pan(?:s|ning|ned)? (?:\w+ )?(?:to the )?left|left pan", "pan_left"),
    (r"pan(?:s|ning|ned)? (?:\w+ )?(?:to the )?right|right pan|pan(?:s|ning)?\b", "pan_right"),
    (r"tilt(?:s|ing|ed)? (?:\w+ )?down|look(?:ing)? down", "tilt_down"),
    (r"tilt(?:s|ing|ed)?\b|look(?:ing)? up|up (?:to|at|toward) the sky", "tilt_up"),
    (
        r"(?:truck|track|dolly|strafe)(?:s|ing)? (?:\w+ )?(?:to the )?left|"
        rf"{_CAM} (?:moves?|slides?|glides?) (?:\w+ )?(?:to the )?left",
        "truck_left",
    ),
    (
        r"(?:truck|track)(?:s|ing)?\b|tracking shot|"
        r"(?:dolly|strafe)(?:s|ing)? (?:\w+ )?(?:to the )?right|"
        rf"{_CAM} (?:moves?|slides?|glides?) (?:\w+ )?(?:to the )?right",
        "truck_right",
    ),
    (rf"pedestal down|{_CAM} (?:lowers|sinks|drops)", "pedestal_down"),
    (rf"pedestal|{_CAM} (?:rises|lifts|climbs)|rising shot|elevating shot", "pedestal_up"),
    (
        r"pull(?:s|ing)? (?:back|out|away)|zoom(?:s|ing)? out|dolly(?:ing)? out|"
        rf"{_CAM} backs? away|"
        r"reveal|wide(?:ning)? shot",
        "pull_out",
    ),
    (
        r"push(?:es|ing)? in|zoom(?:s|ing)?\b|dolly(?:ing)? in|close[- ]?up|"
        rf"{_CAM} (?:moves? closer|moves? in|approach\w*)|"
        r"dolly|push",
        "push_in",
    ),
    (
        r"dutch|barrel roll|camera (?:rolls|rotates|spins|twists)|"
        r"roll(?:s|ing)? (?:shot|left|right|clockwise|counter-?clockwise)|\broll\b$",
        "roll",
    ),
    (r"hand[- ]?held|shaky|camera shake|documentary|found footage|jitter", "handheld"),
]
_FAMILY = {
    "static": "static",
    "dolly_zoom": "zoom",
    "orbit": "orbit",
    "drone": "drone",
    "crane_up": "vertical",
    "crane_down": "vertical",
    "pan_left": "pan",
    "pan_right": "pan",
    "tilt_up": "tilt",
    "tilt_down": "tilt",
    "truck_left": "horizontal",
    "truck_right": "horizontal",
    "pedestal_up": "vertical",
    "pedestal_down": "vertical",
    "pull_out": "zoom",
    "push_in": "zoom",
    "roll": "roll",
    "handheld": "handheld",
}
_SLOW = re.compile(_W + r"(slow(?:ly)?|gentl[ey]|subtle|calm|gradual(?:ly)?|soft(?:ly)?)" + _W)
_FAST = re.compile(_W + r"(fast|quick(?:ly)?|rapid(?:ly)?|dramatic(?:ally)?|dynamic|whip)" + _W)
# Moves the seed picks from when the prompt names none; portraits favour moves that keep a face.
_FITTING_PORTRAIT = ("push_in", "pull_out", "orbit", "truck_right", "truck_left", "pedestal_up")
_FITTING_SCENE = ("push_in", "pull_out", "pan_left", "pan_right", "tilt_up", "drone", "truck_left")


@dataclass(frozen=True)
class PromptMoves:
    """What the prompt reader found: named moves, a speed factor, and handheld shake."""

    moves: tuple[str, ...]
    speed: float = 1.0
    handheld: bool = False
    static: bool = False


def read_prompt(prompt: str) -> PromptMoves:
    """Find camera language in `prompt` ("slow push in on her face", "drone orbit", …)."""
    text = prompt.lower()
    found: dict[str, str] = {}
    spans: list[tuple[int, int]] = []
    for pattern, move in _PHRASES:
        family = _FAMILY[move]
        if family in found:
            continue
        for m in re.finditer(_W + "(?:" + pattern + ")", text):
            if any(m.start() < e and s < m.end() for s, e in spans):
                continue  # already read as part of another move ("dolly zoom" is not a zoom)
            found[family] = move
            spans.append(m.span())
            break
    speed = 1.0
    if _SLOW.search(text):
        speed = 0.6
    elif _FAST.search(text):
        speed = 1.6
    static = found.get("static") == "static"
    handheld = "handheld" in found
    if "orbit" in found:
        found.pop("drone", None)  # "drone orbit" is an orbit, flown
    moves = tuple(v for k, v in found.items() if k != "static")
    return PromptMoves(moves=moves, speed=speed, handheld=handheld, static=static)


# --- the plan -----------------------------------------------------------------------------


@dataclass
class MotionPlan:
    """A resolved camera move. Values are camera units (see the module docstring), already
    scaled by intensity; `amplitude` is what subject-keeping took off (1 = nothing)."""

    camera: dict[str, float]
    source: str  # "camera", "prompt", "seed" or "static"
    moves: tuple[str, ...] = ()
    handheld: bool = False
    dolly_zoom: bool = False
    loop: bool = False
    seed: int = 0
    focus: tuple[float, float] = (0.5, 0.5)  # zoom target, fraction of the canvas
    amplitude: float = 1.0
    overscan: float = 1.0
    handheld_terms: list[tuple[float, float, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "moves": list(self.moves),
            "camera": {k: round(float(v), 3) for k, v in self.camera.items()},
            "handheld": self.handheld,
            "dollyZoom": self.dolly_zoom,
            "loop": self.loop,
            "focus": [round(float(self.focus[0]), 4), round(float(self.focus[1]), 4)],
            "amplitude": round(self.amplitude, 4),
            "overscan": round(self.overscan, 4),
        }


def plan_motion(
    *,
    prompt: str,
    camera: dict | None,
    intensity: str,
    seed: int,
    loop: bool,
    portrait: bool = False,
    focus: tuple[float, float] = (0.5, 0.5),
) -> MotionPlan:
    """Turn the request's camera / prompt / seed into camera values (before fitting)."""
    scale = INTENSITY[intensity]
    values = dict.fromkeys(AXES, 0.0)
    rng = np.random.default_rng(seed)
    handheld = dolly = False
    if camera is not None:
        cam = validate_camera(camera)
        source = "static" if cam["static"] else "camera"
        moves: tuple[str, ...] = ()
        if not cam["static"]:
            for axis in AXES:
                values[axis] = cam[axis] * scale
    else:
        read = read_prompt(prompt)
        moves = read.moves
        handheld = read.handheld
        if read.static and not read.moves:
            source = "static"
        else:
            if not moves:
                fitting = _FITTING_PORTRAIT if portrait else _FITTING_SCENE
                moves = (fitting[int(rng.integers(len(fitting)))],)
                source = "seed"
            else:
                source = "prompt"
            dolly = "dolly_zoom" in moves
            for move in moves:
                for axis, value in MOVES[move].items():
                    values[axis] += value * read.speed * scale
    terms: list[tuple[float, float, float]] = []
    if handheld:
        # Three smooth sinusoids per axis (x, y, roll), seeded; whole cycles when looping.
        for _ in range(9):
            freq = float(rng.uniform(0.25, 1.1))
            terms.append((freq, float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.5, 1))))
    return MotionPlan(
        camera=values,
        source=source,
        moves=moves,
        handheld=handheld,
        dolly_zoom=dolly,
        loop=loop,
        seed=seed,
        focus=focus,
        handheld_terms=terms,
    )


@dataclass(frozen=True)
class CameraState:
    """The camera at one instant, in canvas fractions (x of width, y of height)."""

    cx: float  # view centre
    cy: float
    zoom: float  # view scale relative to the whole canvas (≥ overscan when fitted)
    roll: float  # radians; positive turns content counter-clockwise on screen
    truck: tuple[float, float]  # the translation share that parallax should treat as motion


def ease(t: float, *, loop: bool) -> float:
    """Progress 0 … 1 along the move with zero velocity at the ends (or out-and-back)."""
    if loop:
        return 0.5 - 0.5 * math.cos(2 * math.pi * t)
    return 0.5 - 0.5 * math.cos(math.pi * min(max(t, 0.0), 1.0))


def camera_at(plan: MotionPlan, t: float, *, duration: float, aspect: float) -> CameraState:
    """Camera state at time fraction `t` (0 … 1 over the clip; 1 is one frame past the last
    when looping). `aspect` is the canvas width / height."""
    e = ease(t, loop=plan.loop)
    cam = plan.camera
    a = plan.amplitude
    log_zoom = ZOOM_PER_UNIT * cam["zoom"] * a * e
    zoom = math.exp(log_zoom)
    # Zoom towards the focus: the centre slides to it as the scale grows (never overshooting
    # the canvas, see fit_plan).
    fx, fy = plan.focus
    z_end = math.exp(ZOOM_PER_UNIT * cam["zoom"] * a)
    w = (zoom - 1) / (z_end - 1) if abs(z_end - 1) > 1e-6 and z_end > 1 else 0.0
    cx = 0.5 + (fx - 0.5) * w
    cy = 0.5 + (fy - 0.5) * w
    truck_x = _SHIFT_PER_UNIT * cam["horizontal"] * a * e
    truck_y = -_SHIFT_PER_UNIT * cam["vertical"] * a * e
    pan_x = _SHIFT_PER_UNIT * cam["pan"] * a * e
    pan_y = -_SHIFT_PER_UNIT * cam["tilt"] * a * e
    roll = _ROLL_PER_UNIT * cam["roll"] * a * e
    if plan.handheld and plan.handheld_terms:
        seconds = t * duration
        shake = []
        for k in range(3):
            s = 0.0
            for freq, phase, weight in plan.handheld_terms[3 * k : 3 * k + 3]:
                f = round(freq * duration) / duration if plan.loop else freq
                s += weight * math.sin(2 * math.pi * f * seconds + phase)
            shake.append(s / 2.0)
        pan_x += _HANDHELD_AMPLITUDE * shake[0]
        pan_y += _HANDHELD_AMPLITUDE * shake[1] * aspect
        roll += _HANDHELD_ROLL * shake[2]
    return CameraState(
        cx=cx + truck_x + pan_x,
        cy=cy + truck_y + pan_y,
        zoom=zoom * plan.overscan,
        roll=roll,
        truck=(truck_x, truck_y),
    )


def view_matrix(
    state: CameraState, *, canvas_w: float, canvas_h: float, out_w: int, out_h: int
) -> np.ndarray:
    """2x3 affine taking output pixel centres to canvas pixel coordinates (an inverse map,
    for `cv2.warpAffine(..., flags=WARP_INVERSE_MAP)`)."""
    s = canvas_w / (state.zoom * out_w)  # canvas px per output px
    c, si = math.cos(state.roll), math.sin(state.roll)
    # Positive roll: the camera turns clockwise, so content turns counter-clockwise on screen;
    # with y down, sampling the canvas through R(+roll) does that.
    a = np.array([[s * c, -s * si], [s * si, s * c]])
    centre_out = np.array([out_w / 2.0, out_h / 2.0])
    centre_src = np.array([state.cx * canvas_w, state.cy * canvas_h])
    # pixel centres: output (u + .5) ↦ canvas (x + .5)
    t = centre_src - a @ centre_out - 0.5 + a @ np.array([0.5, 0.5])
    return np.hstack([a, t[:, None]])


def view_corners(state: CameraState, *, aspect: float) -> np.ndarray:
    """Corners of the view in canvas fractions (4x2), for fitting."""
    half_w = 0.5 / state.zoom
    half_h = 0.5 / state.zoom
    c, s = math.cos(state.roll), math.sin(state.roll)
    pts = []
    for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        # work in canvas pixels with height 1, width `aspect`, then back to fractions
        x = dx * half_w * aspect
        y = dy * half_h
        rx, ry = c * x - s * y, s * x + c * y
        pts.append((state.cx + rx / aspect, state.cy + ry))
    return np.array(pts)


def _samples(frames: int, loop: bool) -> list[float]:
    n = max(frames, 2)
    count = min(n, 48)
    return [i / (count - 1) * ((n - 1) / n if loop else 1.0) for i in range(count)]


def _required_overscan(plan: MotionPlan, *, duration: float, aspect: float, frames: int) -> float:
    """Smallest constant zoom factor keeping every view inside the canvas."""

    def fits(k: float) -> bool:
        plan.overscan = k
        for t in _samples(frames, plan.loop):
            pts = view_corners(camera_at(plan, t, duration=duration, aspect=aspect), aspect=aspect)
            if pts.min() < -1e-6 or pts.max() > 1 + 1e-6:
                return False
        return True

    lo, hi = 1.0, 1.0
    while not fits(hi):
        lo, hi = hi, hi * 1.5
        if hi > 64:
            break
    if hi > lo:
        for _ in range(24):
            mid = (lo + hi) / 2
            if fits(mid):
                hi = mid
            else:
                lo = mid
    plan.overscan = hi
    return hi


def _subject_inside(
    plan: MotionPlan, box: tuple[float, float, float, float], *, duration, aspect, frames
) -> bool:
    """Whether `box` (canvas fractions) stays inside every view, with a 2 % margin."""
    x0, y0, x1, y1 = box
    for t in _samples(frames, plan.loop):
        st = camera_at(plan, t, duration=duration, aspect=aspect)
        c, s = math.cos(st.roll), math.sin(st.roll)
        for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)):
            dx, dy = (x - st.cx) * aspect, y - st.cy
            # inverse rotation back into the view frame, then view fractions
            vx, vy = c * dx + s * dy, -s * dx + c * dy
            u = vx * st.zoom / aspect + 0.5
            v = vy * st.zoom + 0.5
            if not (0.02 <= u <= 0.98 and 0.02 <= v <= 0.98):
                return False
    return True


def fit_plan(
    plan: MotionPlan,
    *,
    aspect: float,
    duration: float,
    frames: int,
    subject: tuple[float, float, float, float] | None,
    layer_share: float = 1.0,
) -> MotionPlan:
    """Fix the overscan so no view leaves the canvas and, when a subject box is given (canvas
    fractions), scale the move down until the subject stays inside every frame.

    `layer_share` (0 … 1) is the least share of the zoom that any parallax layer follows: a
    layer that zooms less sees more, so the zoom target keeps room for it too."""
    fx, fy = plan.focus
    z_end = math.exp(ZOOM_PER_UNIT * plan.camera["zoom"])
    if z_end > 1:
        # keep the final view inside the canvas: clamp the zoom target
        half = 0.5 / z_end ** min(max(layer_share, 0.0), 1.0)
        plan.focus = (min(max(fx, half), 1 - half), min(max(fy, half), 1 - half))
    _required_overscan(plan, duration=duration, aspect=aspect, frames=frames)
    if subject is None or _subject_inside(
        plan, subject, duration=duration, aspect=aspect, frames=frames
    ):
        return plan
    lo, hi = 0.0, 1.0
    plan.amplitude = 0.0
    _required_overscan(plan, duration=duration, aspect=aspect, frames=frames)
    if not _subject_inside(plan, subject, duration=duration, aspect=aspect, frames=frames):
        plan.amplitude = 1.0  # the subject does not fit even standing still; keep the move
        _required_overscan(plan, duration=duration, aspect=aspect, frames=frames)
        return plan
    for _ in range(12):
        mid = (lo + hi) / 2
        plan.amplitude = mid
        _required_overscan(plan, duration=duration, aspect=aspect, frames=frames)
        if _subject_inside(plan, subject, duration=duration, aspect=aspect, frames=frames):
            lo = mid
        else:
            hi = mid
    plan.amplitude = lo
    _required_overscan(plan, duration=duration, aspect=aspect, frames=frames)
    return plan
