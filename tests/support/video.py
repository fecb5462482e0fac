"""Checking outputs the way a player would: download and decode with PyAV."""

from __future__ import annotations

import io
import time

import av
import httpx

# API.md §5
SIZES = {
    ("gen-2", "16:9"): (1280, 720),
    ("gen-2", "9:16"): (720, 1280),
    ("gen-2", "1:1"): (960, 960),
    ("gen-3", "16:9"): (1920, 1080),
    ("gen-3", "9:16"): (1080, 1920),
    ("gen-3", "1:1"): (1080, 1080),
    ("gen-4", "16:9"): (1920, 1080),
    ("gen-4", "9:16"): (1080, 1920),
    ("gen-4", "1:1"): (1080, 1080),
}


def poll_like_the_seed(
    client: httpx.Client, gen_id: str, *, timeout: float = 300, interval: float = 2.0
) -> dict:
    """The seed's loop: `while (status === 'processing') { sleep(2000); check }`."""
    deadline = time.monotonic() + timeout
    status = "processing"
    result: dict = {}
    while status == "processing":
        assert time.monotonic() < deadline, f"{gen_id} still processing: {result}"
        time.sleep(interval)
        response = client.get(f"/v1/image_to_video/{gen_id}")
        assert response.status_code == 200, response.text
        result = response.json()["data"]["imagevideo"]
        status = result["status"]
    return result


def check_video(url: str, *, width: int, height: int, frames: int) -> dict:
    """Download `url`, decode every frame, and check codec, size, count and colour tags."""
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] in ("video/mp4", "application/mp4")
    with av.open(io.BytesIO(response.content)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context
        info = {
            "codec": codec.name,
            "width": codec.width,
            "height": codec.height,
            "pix_fmt": codec.pix_fmt,
            "fps": float(stream.average_rate),
            "color_primaries": codec.color_primaries,
            "color_trc": codec.color_trc,
            "colorspace": codec.colorspace,
        }
        decoded = sum(1 for _ in container.decode(stream))
    assert info["codec"] == "h264", info
    assert (info["width"], info["height"]) == (width, height), info
    assert info["pix_fmt"] == "yuv420p", info
    assert info["fps"] == 24, info
    assert decoded == frames, (decoded, frames)
    # moov before mdat (+faststart): a browser can start playing before the download ends
    head = response.content[:4096]
    assert head.find(b"moov") != -1 and (
        head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat")
    )
    return info
