"""Decoding and checking source images: the only way an image enters the engine."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

from stillmotion.engine.errors import InvalidImage

ALLOWED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True)
class ImageLimits:
    """API.md §2: JPEG, PNG and WebP only; ≤ 16 MB; ≤ 40 megapixels; each side 64 … 8000 px."""

    max_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 64
    max_side: int = 8000


def _open_checked(data: bytes, limits: ImageLimits) -> Image.Image:
    """Open `data` lazily and check format, size and pixel count from the header alone."""
    if len(data) > limits.max_bytes:
        raise InvalidImage(f"image is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage("image has too many pixels") from exc
    except Exception as exc:  # Pillow raises many types for garbage input
        raise InvalidImage("not a readable image (JPEG, PNG or WebP expected)") from exc
    if fmt not in ALLOWED_FORMATS:
        raise InvalidImage(f"unsupported image format {fmt}; JPEG, PNG or WebP expected")
    if width * height > limits.max_pixels:
        raise InvalidImage(
            f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}"
        )
    if min(width, height) < limits.min_side or max(width, height) > limits.max_side:
        raise InvalidImage(
            f"image is {width}x{height}; each side must be {limits.min_side} … {limits.max_side} px"
        )
    return image


def check_image(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[str, int, int]:
    """(format, width, height) of a usable image, as displayed (EXIF orientation applied).

    Like `open_image` it reads the whole compressed stream, so a truncated or corrupt file is
    refused, but a JPEG is decoded at 1/8 scale (DCT scaling): checking an upload costs a
    fraction of decoding it.
    """
    image = _open_checked(data, limits)
    fmt, (width, height) = image.format, image.size
    try:
        if fmt == "JPEG":
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        image.load()
        orientation = image.getexif().get(0x0112, 1)
    except Exception as exc:
        raise InvalidImage("image data is corrupt or truncated") from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return fmt, width, height


def open_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode `data` into an RGB image with its EXIF orientation applied.

    Raises `InvalidImage` with a message a user can act on for anything that is not a
    well-formed JPEG, PNG or WebP within `limits`. The header is checked before the pixels
    are decoded, so a decompression bomb costs nothing.
    """
    image = _open_checked(data, limits)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                background = Image.new("RGB", rgba.size, (0, 0, 0))
                background.paste(rgba, mask=rgba.getchannel("A"))
                image = background
            else:
                image = image.convert("RGB")
    except Exception as exc:
        raise InvalidImage("image data is corrupt or truncated") from exc
    return image
