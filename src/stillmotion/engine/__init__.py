"""The stillmotion engine: one still image in, a short camera-moved clip out.

A library that knows nothing of HTTP or databases. The service's `local` provider calls
`render()`; `stillmotion animate` calls it from the command line.
"""

from stillmotion.engine.errors import EngineError, InvalidImage, RenderCancelled
from stillmotion.engine.image import ImageLimits, open_image
from stillmotion.engine.motion import validate_camera
from stillmotion.engine.render import (
    ASPECT_RATIOS,
    VERSIONS,
    RenderResult,
    RenderSpec,
    output_size,
    render,
)

__all__ = [
    "ASPECT_RATIOS",
    "VERSIONS",
    "EngineError",
    "ImageLimits",
    "InvalidImage",
    "RenderCancelled",
    "RenderResult",
    "RenderSpec",
    "open_image",
    "output_size",
    "render",
    "validate_camera",
]
