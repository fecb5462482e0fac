"""Ambient life: subtle motion where the prompt asks for it (water, clouds, smoke, leaves, …).

`ambient_kinds` reads the prompt; `AmbientField` finds where each kind plausibly is in the photo
(water low and blue or glassy, sky high and smooth, leaves green and textured, …) and gives small
backward offsets per frame, exactly zero everywhere else. Every motion is periodic or returns to
rest, so a looping clip closes; frame 0 is always the still itself.

This module also holds the small motion toolkit the brush shares: offsets are sums of fixed
fields times per-frame scalars, so a frame costs a few multiply-adds, not a simulation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["KINDS", "AmbientField", "ambient_kinds"]

FPS = 24  # motion speeds are defined per second of the 24 fps output

_WORDS: dict[str, tuple[str, ...]] = {
    "water": (
        "water", "waters", "ocean", "oceans", "sea", "seas", "river", "rivers", "lake", "lakes",
        "wave", "waves", "waterfall", "stream", "pond", "ripple", "ripples", "rippling", "tide",
        "surf", "creek", "fountain", "shore", "beach", "flowing",
    ),
    "clouds": (
        "cloud", "clouds", "cloudy", "sky", "skies", "overcast", "skyline", "sunset", "sunrise",
    ),
    "smoke": (
        "smoke", "smoky", "smoking", "steam", "steaming", "steamy", "mist", "misty", "fog",
        "foggy", "haze", "hazy", "vapor", "vapour",
    ),
    "leaves": (
        "leaf", "leaves", "foliage", "tree", "trees", "branch", "branches", "grass", "forest",
        "bush", "bushes", "wind", "windy", "breeze", "jungle", "garden",
    ),
    "fire": (
        "fire", "fires", "flame", "flames", "fireplace", "campfire", "bonfire", "candle",
        "candles", "candlelight", "burning", "blaze", "embers", "torch",
    ),
    "hair": ("hair", "hairs", "fur", "furry", "mane", "windswept", "wind-blown"),
}  # fmt: skip
KINDS = frozenset(_WORDS)
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def ambient_kinds(prompt: str) -> set[str]:
    """The ambient kinds (a subset of `KINDS`) whose words appear in `prompt`."""
    words = set(_WORD.findall(prompt.lower()))
    return {kind for kind, names in _WORDS.items() if words.intersection(names)}


class AmbientField:
    """Per-frame backward offsets bringing the areas of the named `kinds` subtly to life.

    `image` is the uint8 RGB source the frames are warped from (HxWx3); `frames` the clip's
    length; with `loop` every motion completes whole cycles so that frame `frames` equals frame
    0; `seed` picks phases and directions; `intensity` scales the amplitudes (0 disables).
    `displacement(i)` gives `(dx, dy)`, float32 HxW: frame i samples the source at
    `s + (dx, dy)(s)`. Outside the detected areas both are exactly 0.
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        kinds: set[str],
        frames: int,
        loop: bool,
        seed: int,
        intensity: float,
    ) -> None:
        unknown = set(kinds) - KINDS
        if unknown:
            raise ValueError(f"unknown ambient kinds {sorted(unknown)}; known: {sorted(KINDS)}")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB image HxWx3, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        self.height, self.width = height, width
        # Ambient motion is smooth: its fields live at most _FIELD_SIDE px long (a few MB, not
        # hundreds) and each frame's offsets are upsampled, still in source pixels.
        scale = min(1.0, _FIELD_SIDE / max(height, width))
        field_h, field_w = max(2, round(height * scale)), max(2, round(width * scale))
        self._motion = Motion(height=field_h, width=field_w)
        if intensity <= 0 or not kinds or frames <= 0:
            return
        rng = np.random.default_rng(seed)
        areas = _Areas(image, height=field_h, width=field_w)
        side = min(height, width)
        for kind in sorted(kinds):  # sorted: the rng is drawn in a fixed order
            weight = areas.weight(kind)
            if weight is None:
                continue
            _PATTERNS[kind].add(
                self._motion,
                weight=weight,
                rng=rng,
                clock=Clock(frames=frames, loop=loop),
                side=float(intensity) * side,
            )

    def displacement(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Backward offsets `(dx, dy)` for frame `i`, float32 HxW."""
        dx, dy = self._motion.displacement(i)
        if dx.shape == (self.height, self.width):
            return dx, dy
        size = (self.width, self.height)
        return (
            cv2.resize(dx, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(dy, size, interpolation=cv2.INTER_LINEAR),
        )


# -- the shared toolkit ---------------------------------------------------------------------


class Clock:
    """Turns a frame index into motion time, looping or not.

    `travel(i)` is how many frames' worth of constant motion have happened by frame i: simply i,
    or, when looping, an ease out and back (at most `frames / π`, top speed 1 frame per frame,
    back at 0 on frame `frames`). `phase(i, period=)` is an angle advancing 2π per `period`
    frames; when looping the period is stretched so whole cycles fit the clip.
    """

    def __init__(self, *, frames: int, loop: bool) -> None:
        self.frames = max(1, int(frames))
        self.loop = loop

    def travel(self, i: int) -> float:
        if not self.loop:
            return float(i)
        turn = 2 * math.pi * (i % self.frames) / self.frames
        return self.frames / (2 * math.pi) * (1 - math.cos(turn))

    def phase(self, i: int, *, period: float) -> float:
        if not self.loop:
            return 2 * math.pi * i / period
        cycles = max(1, round(self.frames / period))
        return 2 * math.pi * cycles * (i % self.frames) / self.frames


class Motion:
    """Offsets as a sum of fixed fields, each scaled by a per-frame coefficient."""

    def __init__(self, *, height: int, width: int) -> None:
        self.shape = (height, width)
        self._terms: list[tuple[Callable[[int], float], np.ndarray | None, np.ndarray | None]] = []

    def add(
        self,
        coefficient: Callable[[int], float],
        dx: np.ndarray | None,
        dy: np.ndarray | None,
    ) -> None:
        """Add `coefficient(i) * (dx, dy)` to every frame's offsets (None is a zero field)."""
        as_field = [None if f is None else np.ascontiguousarray(f, np.float32) for f in (dx, dy)]
        self._terms.append((coefficient, as_field[0], as_field[1]))

    def displacement(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        dx = np.zeros(self.shape, np.float32)
        dy = np.zeros(self.shape, np.float32)
        for coefficient, field_x, field_y in self._terms:
            c = float(coefficient(i))
            if c == 0.0:
                continue
            if field_x is not None:
                cv2.scaleAdd(field_x, c, dx, dst=dx)
            if field_y is not None:
                cv2.scaleAdd(field_y, c, dy, dst=dy)
        return dx, dy


def smooth_noise(rng: np.random.Generator, *, height: int, width: int, cells: int) -> np.ndarray:
    """Smooth random field, float32 HxW, about unit spread, `cells` bumps across the long side."""
    scale = cells / max(height, width)
    grid_h, grid_w = max(2, round(height * scale)) + 1, max(2, round(width * scale)) + 1
    grid = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    spread = float(field.std())
    return field / spread if spread > 0 else field


def _smoothstep(low: float, high: float, value: np.ndarray) -> np.ndarray:
    t = np.clip((value - low) / (high - low), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


# -- where each kind is ---------------------------------------------------------------------

_LOOK_SIDE = 256  # areas are judged on a small copy; they are smooth by design
_FIELD_SIDE = 960  # motion fields are held at most this long


class _Areas:
    """Soft masks (0 … 1, exact 0 outside) of where each kind plausibly is in the image."""

    def __init__(self, image: np.ndarray, *, height: int, width: int) -> None:
        self.height, self.width = height, width  # the size the masks are wanted at
        image_h, image_w = image.shape[:2]
        scale = min(1.0, _LOOK_SIDE / max(image_h, image_w))
        size = (max(8, round(image_w * scale)), max(8, round(image_h * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
        self.hue = hsv[..., 0] * (360.0 / 256.0)
        self.sat = hsv[..., 1] / 255.0
        self.val = hsv[..., 2] / 255.0
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        mean = cv2.GaussianBlur(gray, (0, 0), 2.0)
        square = cv2.GaussianBlur(gray * gray, (0, 0), 2.0)
        self.texture = np.sqrt(np.maximum(square - mean * mean, 0.0))
        rows = np.linspace(0.0, 1.0, small.shape[0], dtype=np.float32)[:, None]
        self.row = np.broadcast_to(rows, gray.shape)
        self.side = max(small.shape[:2])

    def weight(self, kind: str) -> np.ndarray | None:
        """The full-size mask for `kind`, or None when the image shows none of it."""
        raw = getattr(self, f"_{kind}")()
        soft = cv2.GaussianBlur(raw.astype(np.float32), (0, 0), 0.02 * self.side)
        mask = _smoothstep(0.25, 0.6, soft)
        if not mask.any():
            return None
        full = cv2.resize(mask, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        full[full < 1e-3] = 0.0
        return full

    def _hue_near(self, centre: float, reach: float) -> np.ndarray:
        distance = np.abs((self.hue - centre + 180.0) % 360.0 - 180.0)
        return 1.0 - _smoothstep(reach * 0.6, reach, distance)

    def _smooth(self) -> np.ndarray:
        return 1.0 - _smoothstep(0.02, 0.06, self.texture)

    def _water(self) -> np.ndarray:
        low = _smoothstep(0.35, 0.6, self.row)
        blue = self._hue_near(200.0, 45.0) * _smoothstep(0.1, 0.25, self.sat)
        return low * np.maximum(blue, self._smooth() * (1.0 - self._hue_near(30.0, 50.0)))

    def _clouds(self) -> np.ndarray:
        high = 1.0 - _smoothstep(0.35, 0.65, self.row)
        blue = self._hue_near(215.0, 45.0) * _smoothstep(0.08, 0.2, self.sat)
        pale = _smoothstep(0.55, 0.75, self.val) * (1.0 - _smoothstep(0.15, 0.35, self.sat))
        return high * self._smooth() * np.maximum(blue, pale)

    def _leaves(self) -> np.ndarray:
        green = self._hue_near(105.0, 55.0) * _smoothstep(0.15, 0.3, self.sat)
        return green * _smoothstep(0.02, 0.05, self.texture)

    def _smoke(self) -> np.ndarray:
        grey = 1.0 - _smoothstep(0.12, 0.3, self.sat)
        lit = _smoothstep(0.3, 0.5, self.val)
        return grey * lit * self._smooth()

    def _fire(self) -> np.ndarray:
        warm = self._hue_near(25.0, 35.0)
        return warm * _smoothstep(0.4, 0.7, self.sat) * _smoothstep(0.5, 0.8, self.val)

    def _hair(self) -> np.ndarray:
        upper = 1.0 - _smoothstep(0.55, 0.8, self.row)
        # Browns, blonds and greys (not vivid cloth), or dark; with fine texture.
        muted = 1.0 - _smoothstep(0.55, 0.75, self.sat)
        hairish = np.maximum(
            self._hue_near(32.0, 30.0) * muted, 1.0 - _smoothstep(0.15, 0.3, self.val)
        )
        return upper * hairish * _smoothstep(0.04, 0.09, self.texture)


# -- how each kind moves --------------------------------------------------------------------
# Each pattern adds terms whose sum is 0 on frame 0. Sizes are shares of the image's short
# side (`side`), periods are in seconds.


@dataclass(frozen=True)
class _Waves:
    """Bands of sideways displacement travelling along y: ripples on water, curls of smoke.

    dx = A w (sin(a ± θ) - sin a), a = 2π y / λ + noise, expanded as fixed fields times
    (cos θ - 1) and sin θ; dy the same in cosines, scaled by `lift`. `rising` makes the bands
    travel up the image, else down.
    """

    amplitude: float
    wavelength: float
    period: float
    rising: bool
    lift: float

    def add(
        self,
        motion: Motion,
        *,
        weight: np.ndarray,
        rng: np.random.Generator,
        clock: Clock,
        side: float,
    ) -> None:
        height, width = weight.shape
        wavelength = max(6.0, self.wavelength * height)
        rows = np.arange(height, dtype=np.float32)[:, None] * (2 * math.pi / wavelength)
        wobble = 1.5 * smooth_noise(rng, height=height, width=width, cells=4)
        angle = rows + wobble + float(rng.uniform(0, 2 * math.pi))
        sin_a = self.amplitude * side * weight * np.sin(angle)
        cos_a = self.amplitude * side * weight * np.cos(angle)
        sign, lift, period = (1.0 if self.rising else -1.0), self.lift, self.period * FPS
        # sin(a + sθ) - sin a = sin a (cos θ - 1) + s cos a sin θ; cos likewise for the lift.
        motion.add(lambda i: math.cos(clock.phase(i, period=period)) - 1.0, sin_a, lift * cos_a)
        motion.add(lambda i: sign * math.sin(clock.phase(i, period=period)), cos_a, -lift * sin_a)


@dataclass(frozen=True)
class _Jitter:
    """Smooth random sway in place, `cells` bumps across the image."""

    amplitude: float
    cells: int
    period: float

    def add(
        self,
        motion: Motion,
        *,
        weight: np.ndarray,
        rng: np.random.Generator,
        clock: Clock,
        side: float,
    ) -> None:
        height, width = weight.shape
        scale = self.amplitude * side * weight
        fields = [
            scale * smooth_noise(rng, height=height, width=width, cells=self.cells)
            for _ in range(4)
        ]
        period = self.period * FPS
        motion.add(lambda i: math.sin(clock.phase(i, period=period)), fields[0], fields[1])
        motion.add(lambda i: math.cos(clock.phase(i, period=period)) - 1.0, fields[2], fields[3])


@dataclass(frozen=True)
class _Drift:
    """A slow slide sideways, direction by seed; out and back when looping."""

    speed: float  # share of the short side per second

    def add(
        self,
        motion: Motion,
        *,
        weight: np.ndarray,
        rng: np.random.Generator,
        clock: Clock,
        side: float,
    ) -> None:
        direction = 1.0 if rng.random() < 0.5 else -1.0
        per_frame = self.speed * side / FPS
        motion.add(lambda i: -direction * per_frame * clock.travel(i), weight, None)


_PATTERNS: dict[str, _Waves | _Jitter | _Drift] = {
    "water": _Waves(amplitude=0.002, wavelength=0.04, period=2.0, rising=False, lift=0.3),
    "smoke": _Waves(amplitude=0.003, wavelength=0.08, period=3.0, rising=True, lift=0.5),
    "fire": _Waves(amplitude=0.002, wavelength=0.05, period=0.75, rising=True, lift=0.8),
    "clouds": _Drift(speed=0.006),  # about 6 px/s on a 1080-line image
    "leaves": _Jitter(amplitude=0.0015, cells=24, period=1.0),
    "hair": _Jitter(amplitude=0.0015, cells=6, period=2.5),
}
