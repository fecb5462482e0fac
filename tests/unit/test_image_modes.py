"""Every pixel format a PNG, JPEG or WebP decodes to comes out of `open_image` as RGB with the
brightness of the photograph it was made from, and `check_image` accepts exactly what
`open_image` can decode.

Each case is a photograph from skimage.data written in one format and mode; the reference is
the 8-bit version of the same photograph. 16-bit files are written by OpenCV, and the few
layouts neither OpenCV nor Pillow writes (2- and 4-bit gray, 16-bit gray + alpha, a bKGD
chunk) by `_png`, a minimal PNG writer (signature, IHDR, IDAT, IEND: PNG spec §5, §11.2).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from functools import cache

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from stillmotion.engine import open_image
from stillmotion.engine.image import check_image


@cache
def _gray8() -> np.ndarray:
    return skdata.camera()  # 512 x 512, uint8


@cache
def _rgb8() -> np.ndarray:
    return skdata.astronaut()  # 512 x 512 x 3, uint8


def _pil(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _cv2_png(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    return encoded.tobytes()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(rows: np.ndarray, *, bit_depth: int, color_type: int, extra: bytes = b"") -> bytes:
    """A PNG of `rows` (H x row_bytes, already packed), filter 0 on every row."""
    height = rows.shape[0]
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    width = rows.shape[1] * 8 // (bit_depth * channels)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + extra
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def _quantised(bits: int) -> np.ndarray:
    levels = (1 << bits) - 1
    return np.round(_gray8().astype(np.float64) * levels / 255).astype(np.uint8)


def _gray_low_bits(bits: int) -> bytes:
    quantised = _quantised(bits)
    packed = np.zeros((512, 512 * bits // 8), np.uint8)
    per_byte = 8 // bits
    for i in range(per_byte):
        packed |= quantised[:, i::per_byte] << (8 - bits * (i + 1))
    return _png(packed, bit_depth=bits, color_type=0)


def _gray16_alpha() -> bytes:
    pixels = np.empty((512, 512, 2), ">u2")
    pixels[..., 0] = _gray8().astype(np.uint16) * 257
    pixels[..., 1] = 65535
    return _png(pixels.reshape(512, -1).view(np.uint8), bit_depth=16, color_type=4)


def _one_clear_pixel(rgb: np.ndarray) -> Image.Image:
    """RGBA with one transparent pixel: an opaque WebP decodes as RGB."""
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 0
    return Image.fromarray(rgba, "RGBA")


def _cmyk_jpeg() -> bytes:
    """A CMYK JPEG with a real black separation (K = 255 - max(R, G, B), grey component
    replacement), so the decode has to use K, not just invert three channels."""
    rgb = _rgb8().astype(np.float64)
    k = 255 - rgb.max(axis=2)
    scale = np.where(k < 255, 255 - k, 1)
    cmy = 255 * (1 - rgb / scale[..., None])
    cmyk = np.dstack([cmy, k]).round().clip(0, 255).astype(np.uint8)
    return _pil(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=95)


GRAY = "gray"
GRAY2 = "gray, 2 bits"
GRAY4 = "gray, 4 bits"
COLOUR = "colour"

# name -> (file bytes, the mode Pillow opens it as, the reference photograph it was made from)
CASES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "png-1-bit": (lambda: _pil(Image.fromarray(_gray8()).convert("1"), "PNG"), "1", GRAY),
    "png-2-bit-gray": (lambda: _gray_low_bits(2), "L", GRAY2),
    "png-4-bit-gray": (lambda: _gray_low_bits(4), "L", GRAY4),
    "png-L": (lambda: _pil(Image.fromarray(_gray8()), "PNG"), "L", GRAY),
    "png-LA": (lambda: _pil(Image.fromarray(_gray8()).convert("LA"), "PNG"), "LA", GRAY),
    "png-P": (lambda: _pil(Image.fromarray(_rgb8()).quantize(256), "PNG"), "P", COLOUR),
    "png-P-4-bit": (
        lambda: _pil(Image.fromarray(_rgb8()).quantize(16), "PNG", bits=4),
        "P",
        COLOUR,
    ),
    "png-RGB": (lambda: _pil(Image.fromarray(_rgb8()), "PNG"), "RGB", COLOUR),
    "png-RGBA": (lambda: _pil(Image.fromarray(_rgb8()).convert("RGBA"), "PNG"), "RGBA", COLOUR),
    "png-16-bit-gray": (lambda: _cv2_png(_gray8().astype(np.uint16) * 257), "I;16", GRAY),
    "png-16-bit-gray-alpha": (_gray16_alpha, "RGBA", GRAY),
    "png-16-bit-RGB": (
        lambda: _cv2_png(cv2.cvtColor(_rgb8(), cv2.COLOR_RGB2BGR).astype(np.uint16) * 257),
        "RGB",
        COLOUR,
    ),
    "png-16-bit-RGBA": (
        lambda: _cv2_png(cv2.cvtColor(_rgb8(), cv2.COLOR_RGB2BGRA).astype(np.uint16) * 257),
        "RGBA",
        COLOUR,
    ),
    "jpeg-L": (lambda: _pil(Image.fromarray(_gray8()), "JPEG", quality=95), "L", GRAY),
    "jpeg-RGB": (lambda: _pil(Image.fromarray(_rgb8()), "JPEG", quality=95), "RGB", COLOUR),
    "jpeg-from-YCbCr": (
        lambda: _pil(Image.fromarray(_rgb8()).convert("YCbCr"), "JPEG", quality=95),
        "RGB",
        COLOUR,
    ),
    "jpeg-CMYK": (_cmyk_jpeg, "CMYK", COLOUR),
    "webp-RGB": (lambda: _pil(Image.fromarray(_rgb8()), "WEBP", quality=95), "RGB", COLOUR),
    "webp-RGBA": (lambda: _pil(_one_clear_pixel(_rgb8()), "WEBP", lossless=True), "RGBA", COLOUR),
    "webp-from-L": (lambda: _pil(Image.fromarray(_gray8()), "WEBP", quality=95), "RGB", GRAY),
}


def _reference(kind: str) -> np.ndarray:
    """The 8-bit photograph as RGB, the way an 8-bit file of it is shown (for 2- and 4-bit
    gray: of its levels, each scaled to 0 … 255)."""
    if kind == COLOUR:
        return _rgb8()
    gray = _gray8()
    if kind in (GRAY2, GRAY4):
        bits = 2 if kind == GRAY2 else 4
        gray = np.round(_quantised(bits) * (255 / ((1 << bits) - 1))).astype(np.uint8)
    return np.asarray(Image.fromarray(gray).convert("RGB"))


@pytest.mark.parametrize("name", list(CASES))
def test_every_mode_is_decoded_with_the_brightness_of_its_photograph(name):
    make, mode, kind = CASES[name]
    data = make()
    assert Image.open(io.BytesIO(data)).mode == mode, "the case does not test the mode it names"
    rendered = np.asarray(open_image(data), dtype=np.float64)
    reference = _reference(kind).astype(np.float64)
    assert rendered.shape == reference.shape
    # Per channel: a clipped 16-bit image is white (mean 255), a mis-scaled one far off.
    for channel in range(3):
        got, want = rendered[..., channel].mean(), reference[..., channel].mean()
        assert abs(got - want) < 4, (channel, got, want)
    # And pixel by pixel (1-bit and 4-bit palettes are dithered or coarse: their error is
    # large per pixel, so only the mean is compared for them).
    if name not in ("png-1-bit", "png-2-bit-gray", "png-P-4-bit"):
        assert np.abs(rendered - reference).mean() < 12, np.abs(rendered - reference).mean()


@pytest.mark.parametrize("name", list(CASES))
def test_the_intake_check_accepts_what_the_engine_decodes(name):
    data = CASES[name][0]()
    fmt, width, height = check_image(data)
    assert fmt in ("PNG", "JPEG", "WEBP")
    assert (width, height) == open_image(data).size


def test_16_bit_gray_keeps_its_full_range():
    ramp = np.tile(np.array([0, 257, 32896, 65535], np.uint16).repeat(16), (64, 1))
    out = np.asarray(open_image(_cv2_png(ramp)))
    assert out.shape == (64, 64, 3)
    assert [int(v) for v in out[0, ::16, 0]] == [0, 1, 128, 255]


def _alpha_half(rgb: np.ndarray) -> np.ndarray:
    """RGBA: the left half fully transparent (its colour channels black), the right opaque."""
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:, : rgb.shape[1] // 2] = 0
    return rgba


TRANSPARENT_CASES: dict[str, Callable[[], bytes]] = {
    "png-RGBA": lambda: _pil(Image.fromarray(_alpha_half(_rgb8()), "RGBA"), "PNG"),
    "webp-RGBA": lambda: _pil(Image.fromarray(_alpha_half(_rgb8()), "RGBA"), "WEBP", lossless=True),
    "png-LA": lambda: _pil(Image.fromarray(_alpha_half(_rgb8()), "RGBA").convert("LA"), "PNG"),
    "png-P-tRNS": lambda: _pil(Image.fromarray(_alpha_half(_rgb8()), "RGBA").quantize(255), "PNG"),
    "png-RGB-tRNS": lambda: _pil(
        Image.fromarray(_alpha_half(_rgb8())[..., :3]), "PNG", transparency=(0, 0, 0)
    ),
    "png-L-tRNS": lambda: _pil(
        Image.fromarray(_alpha_half(_rgb8())[..., 0]), "PNG", transparency=0
    ),
    "png-16-bit-gray-tRNS": lambda: _pil(
        Image.fromarray(_alpha_half(_rgb8())[..., 0].astype(np.uint16) * 257),
        "PNG",
        transparency=0,
    ),
    "png-16-bit-RGBA": lambda: _cv2_png(
        cv2.cvtColor(_alpha_half(_rgb8()), cv2.COLOR_RGBA2BGRA).astype(np.uint16) * 257
    ),
}


@pytest.mark.parametrize("name", list(TRANSPARENT_CASES))
def test_transparent_pixels_are_shown_on_white(name):
    data = TRANSPARENT_CASES[name]()
    image = Image.open(io.BytesIO(data))
    assert image.mode in ("RGBA", "LA", "P", "RGB", "L", "I;16"), image.mode
    out = np.asarray(open_image(data), dtype=np.float64)
    left, right = out[:, :256], out[:, 256:]
    assert left.min() == 255, "transparent pixels are white"
    # The opaque half keeps its photograph (the tRNS cases lose the pixels that happen to
    # have the transparent value, a few per cent at most).
    assert right.mean() < 200 and right.mean() > 60


def test_a_png_background_chunk_is_used_for_transparent_pixels():
    rgba = _alpha_half(_rgb8())
    base = _pil(Image.fromarray(rgba, "RGBA"), "PNG")
    # bKGD for colour type 6 is three 16-bit samples (PNG spec §11.3.5.1); it goes before IDAT.
    bkgd = _chunk(b"bKGD", struct.pack(">HHH", 10, 120, 250))
    at = base.index(b"IDAT") - 4
    data = base[:at] + bkgd + base[at:]
    out = np.asarray(open_image(data))
    assert (out[:, :256] == (10, 120, 250)).all()


def test_a_16_bit_png_background_chunk_is_scaled():
    rgba16 = cv2.cvtColor(_alpha_half(_rgb8()), cv2.COLOR_RGBA2BGRA).astype(np.uint16) * 257
    base = _cv2_png(rgba16)
    bkgd = _chunk(b"bKGD", struct.pack(">HHH", 10 * 257, 120 * 257, 250 * 257))
    at = base.index(b"IDAT") - 4
    out = np.asarray(open_image(base[:at] + bkgd + base[at:]))
    assert (out[:, :256] == (10, 120, 250)).all()
