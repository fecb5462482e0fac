"""Source-image checks: what `check_image` accepts and refuses, and that it agrees with a
full decode (`open_image`) on size and orientation."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from stillmotion.engine import InvalidImage, open_image
from stillmotion.engine.image import ImageLimits, check_image
from tests.support.servers import photo_bytes


def _jpeg_with_orientation(orientation: int) -> bytes:
    image = Image.open(io.BytesIO(photo_bytes("chelsea")))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_size_is_as_displayed(orientation):
    data = _jpeg_with_orientation(orientation)
    fmt, width, height = check_image(data)
    assert fmt == "JPEG"
    assert (width, height) == open_image(data).size


@pytest.mark.parametrize(
    "data",
    [
        photo_bytes("astronaut")[:3000],  # truncated JPEG
        photo_bytes("coffee", "PNG")[:5000],  # truncated PNG
        b"GIF89a" + b"\0" * 100,
        b"plain text pretending to be an image",
    ],
)
def test_broken_or_foreign_files_are_refused(data):
    with pytest.raises(InvalidImage):
        check_image(data)
    with pytest.raises(InvalidImage):
        open_image(data)


def test_limits_are_read_from_the_header():
    data = photo_bytes("astronaut")  # 512 x 512
    with pytest.raises(InvalidImage, match="each side"):
        check_image(data, ImageLimits(max_side=500))
    with pytest.raises(InvalidImage, match="pixels"):
        check_image(data, ImageLimits(max_pixels=512 * 511))
    assert check_image(photo_bytes("coffee", "PNG"))[0] == "PNG"
