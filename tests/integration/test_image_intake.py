"""Source images through a real server, by all three routes (`imageUrl`, a data URI, an upload):
a JPEG whose header promises more than its data holds is refused before any charge, one that
lacks only its end marker is accepted, a data URI without a media type is refused, and a 16-bit
gray PNG renders with the brightness of its 8-bit original."""

from __future__ import annotations

import base64
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from tests.support import api
from tests.support.servers import TEST_HOST, photo_bytes


def _lying_jpeg() -> bytes:
    """64x64 pixels of data under a frame header (SOF0) that says 8000x5000."""
    image = Image.open(io.BytesIO(photo_bytes("astronaut"))).resize((64, 64))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=50)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (5000).to_bytes(2, "big") + (8000).to_bytes(2, "big")
    return bytes(data)


FILES = {
    "/lying.jpg": _lying_jpeg(),
    "/no-eoi.jpg": photo_bytes("astronaut", size=256)[:-2],
}


@pytest.fixture(scope="module")
def files_url():
    """A loopback HTTP server (on the allow-listed test address) serving `FILES`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = FILES.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer((TEST_HOST, 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield lambda path: f"http://{TEST_HOST}:{httpd.server_address[1]}{path}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def client(server):
    with server.client(server.create_key("image-intake", plan="pro", credits=10_000)) as c:
        yield c


def _create(client, **image) -> httpx.Response:
    body = {"service": "runway-i2v", "prompt": "", "version": "gen-2", "duration": 2, **image}
    return client.post("/v1/image_to_video", json=body)


def _data_uri(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _upload(client, data: bytes) -> httpx.Response:
    return client.post("/v1/uploads", files={"file": ("photo.jpg", data, "image/jpeg")})


def _invalid_image(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    err = response.json()["errors"][0]
    assert err["extensions"]["code"] == "INVALID_IMAGE", err
    assert "corrupt or truncated" in err["message"]


def test_a_jpeg_with_less_data_than_its_header_is_refused_by_every_route(client, files_url):
    before = api.account(client)["creditBalance"]
    _invalid_image(_create(client, imageUrl=files_url("/lying.jpg")))
    _invalid_image(_create(client, image=_data_uri(FILES["/lying.jpg"])))
    _invalid_image(_upload(client, FILES["/lying.jpg"]))
    assert api.account(client)["creditBalance"] == before, "nothing is charged"


def test_a_jpeg_without_its_end_marker_is_accepted_by_every_route(client, files_url):
    data = FILES["/no-eoi.jpg"]
    assert not data.endswith(b"\xff\xd9")
    by_url = _create(client, imageUrl=files_url("/no-eoi.jpg"))
    assert by_url.status_code == 202, by_url.text
    by_data_uri = _create(client, image=_data_uri(data))
    assert by_data_uri.status_code == 202, by_data_uri.text
    uploaded = _upload(client, data)
    assert uploaded.status_code == 201, uploaded.text
    upload = uploaded.json()["data"]["upload"]
    assert (upload["width"], upload["height"]) == (256, 256)
    by_upload = _create(client, image=upload["uri"])
    assert by_upload.status_code == 202, by_upload.text
    for response in (by_url, by_data_uri, by_upload):
        client.delete(f"/v1/image_to_video/{response.json()['data']['imagevideo']['id']}")


@pytest.mark.parametrize("prefix", ["data:;base64,", "data:base64,", "data:;charset=x;base64,"])
def test_a_data_uri_without_an_image_type_is_refused(client, prefix):
    uri = prefix + base64.b64encode(photo_bytes("astronaut", size=128)).decode()
    response = _create(client, image=uri)
    assert response.status_code == 400, response.text
    err = response.json()["errors"][0]
    assert err["extensions"]["code"] == "VALIDATION_ERROR"
    assert err["extensions"]["field"] == "image"
    assert "data:image/png;base64" in err["message"]


def _poster_brightness(client, image: str) -> float:
    # The same seed, a static camera and the source's own aspect ratio: two renders of the
    # same pixels give the same poster, so the posters differ only if the decodes do.
    created = _create(client, image=image, camera={"static": True}, seed=7, aspectRatio="1:1")
    assert created.status_code == 202, created.text
    done = api.wait_finished(client, created.json()["data"]["imagevideo"]["id"])
    assert done["status"] == "completed", done
    poster = httpx.get(done["posterUrl"], timeout=30)
    assert poster.status_code == 200
    return float(np.asarray(Image.open(io.BytesIO(poster.content)).convert("L")).mean())


@pytest.mark.slow
def test_a_16_bit_gray_png_renders_as_bright_as_its_8_bit_original(client):
    gray8 = cv2.resize(skdata.camera(), (256, 256), interpolation=cv2.INTER_AREA)
    ok, png16 = cv2.imencode(".png", gray8.astype(np.uint16) * 257)
    assert ok
    ok, png8 = cv2.imencode(".png", gray8)
    assert ok
    eight = _poster_brightness(client, _data_uri(png8.tobytes(), "image/png"))
    sixteen = _poster_brightness(client, _data_uri(png16.tobytes(), "image/png"))
    assert abs(sixteen - eight) < 4, (sixteen, eight)
    assert abs(eight - gray8.mean()) < 25, "the poster shows the photograph"
