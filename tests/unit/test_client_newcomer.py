"""What a new SDK user trips on, checked before any request: wrong parameter names in messages,
misspelled keywords, and cheap fields refused before an image is uploaded.

The clients point at a port nothing listens on, with no retries: a check that let the call
through to the network would end in `NetworkError`, not in the error asserted here.
"""

from __future__ import annotations

import asyncio
import typing

import pytest

from stillmotion import options
from stillmotion.client import AsyncClient, Client, GenerationOptions
from stillmotion.client.errors import NetworkError, ValidationError
from tests.support.servers import free_port


@pytest.fixture
def client():
    with Client(base_url=f"http://127.0.0.1:{free_port()}", api_key="sm_x", max_retries=0) as c:
        yield c


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really decoded before the upload")
    return path


def test_the_unreachable_port_really_ends_in_a_network_error(client, photo):
    """The premise of every test below: a call that goes out fails differently."""
    with pytest.raises(NetworkError, match=r"is a server running at http://127\.0\.0\.1:"):
        client.generate(image=str(photo))


@pytest.mark.parametrize("method", ["generate", "animate_image"])
def test_a_local_path_as_image_url_names_image_url(client, method):
    with pytest.raises(ValidationError) as info:
        getattr(client, method)(image_url="photo.jpg")
    assert "image_url" in info.value.message
    assert "image=" in info.value.message  # the remedy: local files go in image=
    assert info.value.field == "image_url"


@pytest.mark.parametrize("method", ["generate", "animate_image", "batch"])
def test_a_misspelled_keyword_names_the_method_and_the_valid_ones(client, photo, method):
    args = ([str(photo)],) if method == "batch" else ()
    kwargs = {} if method == "batch" else {"image": str(photo)}
    with pytest.raises(TypeError) as info:
        getattr(client, method)(*args, **kwargs, durration=5)
    message = str(info.value)
    assert f"Client.{method}() got an unexpected keyword argument 'durration'" in message
    assert "did you mean 'duration'" in message
    for name in typing.get_type_hints(GenerationOptions):
        assert name in message
    assert "generation_options" not in message


def test_the_async_client_names_itself_too():
    async def main():
        async with AsyncClient(base_url="http://127.0.0.1:1", api_key="sm_x") as c:
            await c.generate(image_url="https://example.com/a.jpg", aspect=3)

    with pytest.raises(TypeError, match=r"AsyncClient\.generate\(\) .* 'aspect'"):
        asyncio.run(main())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"duration": 0}, "duration"),
        ({"duration": options.DURATION_MAX + 1}, "duration"),
        ({"duration": True}, "duration"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"version": "gen-5"}, "version"),
        ({"motion_intensity": "extreme"}, "motion_intensity"),
        ({"seed": -1}, "seed"),
        ({"camera": {"zoom": 11}}, "camera"),
        ({"camera": {"zoomm": 1}}, "camera"),
        ({"prompt": "x" * (options.PROMPT_MAX + 1)}, "prompt"),
    ],
)
def test_cheap_fields_are_refused_before_the_image_is_uploaded(client, photo, kwargs, field):
    with pytest.raises(ValidationError) as info:
        client.generate(image=str(photo), **kwargs)
    assert info.value.field == field
    assert info.value.message.startswith(field)
    assert info.value.code == "VALIDATION_ERROR"


def test_batch_refuses_bad_options_once_before_any_upload(client, photo):
    with pytest.raises(ValidationError, match="duration"):
        client.batch([str(photo), str(photo)], duration=1)


def test_the_limits_are_the_api_schemas():
    """The SDK and CLIs check `stillmotion.options`; the API's schema must say the same."""
    from stillmotion.generations.schemas import Camera, GenerateRequest

    fields = GenerateRequest.model_fields

    def bounds(name: str) -> tuple:
        found = {}
        for item in fields[name].metadata:
            for attr in ("ge", "le", "max_length"):
                if getattr(item, attr, None) is not None:
                    found[attr] = getattr(item, attr)
        return found.get("ge"), found.get("le"), found.get("max_length")

    assert bounds("duration")[:2] == (options.DURATION_MIN, options.DURATION_MAX)
    assert fields["duration"].default == options.DURATION_DEFAULT
    assert bounds("seed")[:2] == (0, options.SEED_MAX)
    assert bounds("prompt")[2] == options.PROMPT_MAX
    assert bounds("motion_brush")[2] == options.MOTION_BRUSH_MAX
    for name, values in [
        ("aspect_ratio", options.ASPECT_RATIOS),
        ("version", options.VERSIONS),
        ("motion_intensity", options.MOTION_INTENSITIES),
    ]:
        literal = typing.get_args(fields[name].annotation)
        assert set(literal) == set(values), name
    assert set(Camera.model_fields) == {*options.CAMERA_AXES, "static"}
    zoom = {type(m).__name__: m for m in Camera.model_fields["zoom"].metadata}
    assert (zoom["Ge"].ge, zoom["Le"].le) == (options.CAMERA_MIN, options.CAMERA_MAX)
