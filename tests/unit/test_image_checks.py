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


def _lying_jpeg() -> bytes:
    """A 64x64 JPEG whose frame header (SOF0) is edited to say 8000x5000: the scan holds 64 of
    the 625,000 blocks the header promises. libjpeg fills the rest with grey and only warns."""
    image = Image.open(io.BytesIO(photo_bytes("astronaut"))).resize((64, 64))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=50)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (5000).to_bytes(2, "big") + (8000).to_bytes(2, "big")
    return bytes(data)


def _progressive(name: str = "astronaut") -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes(name))).save(buf, "JPEG", quality=90, progressive=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        _lying_jpeg(),
        photo_bytes("astronaut")[:3000] + b"\xff\xd9",  # cut short, then an end marker
        _progressive()[: len(_progressive()) // 2] + b"\xff\xd9",
        _progressive()[: len(_progressive()) // 2],
    ],
    ids=[
        "header-lies-about-size",
        "truncated-then-EOI",
        "progressive-truncated-then-EOI",
        "progressive-truncated",
    ],
)
def test_a_jpeg_with_less_data_than_its_header_declares_is_refused(data):
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        check_image(data)
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        open_image(data)


@pytest.mark.parametrize(
    "complete",
    [photo_bytes("astronaut"), _progressive("chelsea")],
    ids=["baseline", "progressive"],
)
def test_a_jpeg_missing_only_its_end_marker_is_accepted_whole(complete):
    # Browsers show such a file; it is what an interrupted write of the last two bytes leaves.
    assert complete.endswith(b"\xff\xd9")
    data = complete[:-2]
    assert check_image(data) == check_image(complete)
    assert open_image(data).tobytes() == open_image(complete).tobytes()


def test_bytes_after_a_jpeg_end_marker_are_ignored():
    complete = photo_bytes("astronaut")
    for tail in (b"\0" * 100, photo_bytes("chelsea", size=64)):
        assert check_image(complete + tail) == check_image(complete)
        assert open_image(complete + tail).tobytes() == open_image(complete).tobytes()
