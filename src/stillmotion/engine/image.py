"""Decoding and checking source images: the only way an image enters the engine.

`check_image` (intake) and `open_image` (the render) open a file the same way, refuse the same
files, and accept exactly the pixel formats `_to_rgb` turns into 8-bit RGB.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image, ImageOps

from stillmotion.engine.errors import InvalidImage

ALLOWED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}

# Transparent pixels are shown on the image's own background colour (a PNG's bKGD chunk) or,
# without one, on white, as a browser shows them on a page.
DEFAULT_BACKGROUND = (255, 255, 255)

# Every mode Pillow decodes a PNG, JPEG or WebP to ("I" is how Pillow before 10 opened a
# 16-bit gray PNG; the premultiplied and padded ones come from plugins' draft modes).
WIDE_GRAY = frozenset({"I;16", "I;16B", "I;16L", "I"})
_ALPHA = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
MODES = frozenset({"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr"} | WIDE_GRAY | _ALPHA)

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"


@dataclass(frozen=True)
class ImageLimits:
    """API.md §2: JPEG, PNG and WebP only; ≤ 16 MB; ≤ 40 megapixels; each side 64 … 8000 px."""

    max_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 64
    max_side: int = 8000


def _check_jpeg_stream(data: bytes) -> None:
    """Refuse a JPEG whose compressed data ends before the picture its header declares.

    libjpeg (Pillow's decoder) fills what is missing with grey and only warns, and Pillow drops
    the warning; FFmpeg's decoder with `err_detect=explode` refuses it, and, like a browser,
    accepts a file that lacks only its final EOI marker. `lowres=3` decodes at 1/8 scale (DCT
    scaling), which still reads every bit of every scan.
    """
    codec = av.CodecContext.create("mjpeg", "r")
    codec.thread_count = 1
    codec.options = {"err_detect": "explode", "lowres": "3"}
    try:
        frames = [*codec.decode(av.Packet(data)), *codec.decode(None)]
    except Exception as exc:  # av.FFmpegError and its subclasses, for corrupt data
        raise InvalidImage("image data is corrupt or truncated") from exc
    if not frames:
        raise InvalidImage("image data is corrupt or truncated")


def _open_checked(data: bytes, limits: ImageLimits) -> Image.Image:
    """Open `data` lazily and check format, size, pixel count and pixel format from the header
    alone; a JPEG's compressed data is checked whole (at 1/8 scale) before it is decoded."""
    if len(data) > limits.max_bytes:
        raise InvalidImage(f"image is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    if data.startswith(_JPEG_SOI) and not data.endswith(_JPEG_EOI):
        # What a browser does with a JPEG that lacks its end marker; libjpeg refuses it.
        # A file cut short inside its data is still refused, by `_check_jpeg_stream`.
        data += _JPEG_EOI
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
    if image.mode not in MODES:
        raise InvalidImage(f"unsupported pixel format {image.mode} in this {fmt}")
    if fmt == "JPEG":
        _check_jpeg_stream(data)
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
    """Decode `data` into an 8-bit RGB image with its EXIF orientation applied.

    Raises `InvalidImage` with a message a user can act on for anything that is not a
    well-formed JPEG, PNG or WebP within `limits`. The header is checked before the pixels
    are decoded, so a decompression bomb costs nothing. 16-bit samples are scaled to 8 bits;
    transparent pixels are composited onto the image's background colour (`DEFAULT_BACKGROUND`
    when it names none).
    """
    image = _open_checked(data, limits)
    try:
        background = (_png_background(data, image) if image.format == "PNG" else None) or (
            DEFAULT_BACKGROUND
        )
        image.load()
        image = _to_rgb(ImageOps.exif_transpose(image), background)
    except Exception as exc:
        raise InvalidImage("image data is corrupt or truncated") from exc
    return image


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """8-bit RGB of any mode in `MODES`, transparent pixels shown on `background`."""
    if image.mode in WIDE_GRAY:
        image = wide_gray_to_8_bit(image)
    if image.mode in _ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    if image.mode == "RGB":
        return image
    # CMYK: Pillow's conversion is R = (255 - C)(255 - K) / 255 (no colour profile applied).
    return image.convert("RGB")


def wide_gray_to_8_bit(image: Image.Image) -> Image.Image:
    """L (or LA, for a tRNS gray value) from 16-bit gray: v / 257, rounded. Pillow's own
    conversion clips at 255 instead, which makes nearly every pixel white."""
    values = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    gray = ((values + 128) // 257).astype(np.uint8)
    transparent = image.info.get("transparency")
    if isinstance(transparent, int):
        alpha = np.where(values == transparent, 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([gray, alpha]))
    return Image.fromarray(gray)


def _png_background(data: bytes, image: Image.Image) -> tuple[int, int, int] | None:
    """The colour of a PNG's bKGD chunk (PNG spec §11.3.5.1), scaled to 8 bits; Pillow does
    not read it. None when there is none or it is malformed."""
    try:
        bit_depth, color_type = data[24], data[25]
        pos = 8
        while pos + 8 <= len(data):
            length, kind = struct.unpack_from(">I4s", data, pos)
            if kind in (b"IDAT", b"IEND"):
                return None
            if kind == b"bKGD":
                body = data[pos + 8 : pos + 8 + length]
                break
            pos += 12 + length
        else:
            return None
        if color_type == 3:
            palette = image.getpalette() or []
            index = body[0] * 3
            r, g, b = palette[index : index + 3]
            return (r, g, b)
        top = (1 << bit_depth) - 1
        samples = struct.unpack(">HHH" if color_type in (2, 6) else ">H", body)
        if any(s > top for s in samples):
            return None
        r, g, b = (round(s * 255 / top) for s in samples * (3 // len(samples)))
        return (r, g, b)
    except (struct.error, IndexError, ValueError):
        return None
