"""API.md §2's generation options: their allowed values and ranges, in one place.

Imports nothing but `typing`, so the API's request schema, the SDK, the client CLI and the engine's
`animate` can all take their limits from here; the SDK and the CLIs check them before
anything is uploaded. `tests/unit/test_client_newcomer.py` checks that the schema agrees.
"""

from __future__ import annotations

from typing import Literal, get_args

Version = Literal["gen-2", "gen-3", "gen-4"]
AspectRatio = Literal["16:9", "9:16", "1:1"]
MotionIntensity = Literal["low", "medium", "high"]
VERSIONS: tuple[str, ...] = get_args(Version)
ASPECT_RATIOS: tuple[str, ...] = get_args(AspectRatio)
MOTION_INTENSITIES: tuple[str, ...] = get_args(MotionIntensity)
DURATION_MIN, DURATION_MAX, DURATION_DEFAULT = 2, 10, 5
SEED_MAX = 2**32 - 1
CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "zoom", "roll")
CAMERA_MIN, CAMERA_MAX = -10, 10
PROMPT_MAX = 1000
MOTION_BRUSH_MAX = 5
SIZE_MIN, SIZE_MAX = 256, 2560  # an explicit output width or height: even pixels
