"""Source images: uploads, and resolving `image`/`imageUrl` to checked bytes in storage.

An image is fetched, decoded and checked, and its bytes stored, before a generation is
accepted, so a job never depends on a URL staying up (API.md §2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta

from stillmotion import errors, net
from stillmotion.config import Settings
from stillmotion.db import Database, utcnow
from stillmotion.engine import ImageLimits
from stillmotion.engine import InvalidImage as EngineInvalidImage
from stillmotion.engine.image import check_image as engine_check_image
from stillmotion.storage import Storage
from stillmotion.uploads.models import Upload

# The media type is required (`data:;base64,…` is refused): it says the bytes are an image.
_DATA_URI = re.compile(r"^data:(image/[a-z0-9.+-]+)(;[a-z0-9=.+-]+)*;base64,", re.I)
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True)
class StoredImage:
    key: str
    content_type: str
    width: int
    height: int
    bytes: int


def _limits(settings: Settings) -> ImageLimits:
    return ImageLimits(max_bytes=settings.max_image_bytes)


def check_image(data: bytes, *, settings: Settings) -> tuple[str, int, int]:
    """(format, width, height) of a valid source image, or `InvalidImage`/`PayloadTooLarge`."""
    if len(data) > settings.max_image_bytes:
        raise errors.PayloadTooLarge(
            f"image is {len(data)} bytes; the limit is {settings.max_image_bytes} bytes"
        )
    try:
        return engine_check_image(data, _limits(settings))
    except EngineInvalidImage as exc:
        raise errors.InvalidImage(str(exc)) from None


def _store(storage: Storage, data: bytes, fmt: str, width: int, height: int) -> StoredImage:
    key = f"sources/{hashlib.sha256(data).hexdigest()}.{_EXT[fmt]}"
    if not storage.exists(key):
        storage.put_bytes(key, data)
    return StoredImage(
        key=key, content_type=_MIME[fmt], width=width, height=height, bytes=len(data)
    )


def decode_data_uri(ref: str, *, settings: Settings) -> bytes:
    match = _DATA_URI.match(ref)
    if not match:
        raise errors.ValidationFailed(
            "a data URI must name an image type and be base64: data:image/png;base64,…",
            field="image",
        )
    payload = ref[match.end() :]
    if len(payload) * 3 // 4 > settings.max_data_uri_bytes + 3:
        raise errors.PayloadTooLarge(
            f"a data URI image may be at most {settings.max_data_uri_bytes} bytes decoded"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidImage("the data URI is not valid base64") from None


@dataclass(frozen=True)
class Source:
    """The image a request names: bytes still to be checked and stored, or an upload that
    already was."""

    data: bytes | None = None
    stored: StoredImage | None = None


_LOCAL_IMAGE_HINT = (
    " A local image can be sent inline as a data: URI (data:image/jpeg;base64,...), or uploaded"
    " with POST /v1/uploads and named by its upload:// id."
)


async def resolve_source(
    *,
    db: Database,
    settings: Settings,
    storage: Storage,
    account_id: str,
    ref: str,
    field: str = "image",
) -> Source:
    """Fetch (or decode from its data URI) the image that `ref` names; `store_source` then
    checks and stores it. `field` is the request field that held `ref`, for error messages."""
    ref = ref.strip()
    if ref.startswith("upload://"):
        upload_id = ref.removeprefix("upload://")
        with db.session() as session:
            row = session.get(Upload, upload_id)
            if row is None or row.account_id != account_id or row.expires_at < utcnow():
                raise errors.ValidationFailed(
                    f"no upload {upload_id!r} (uploads are kept {settings.upload_ttl_hours} h)",
                    field="image",
                )
            return Source(
                stored=StoredImage(
                    key=row.storage_key,
                    content_type=row.content_type,
                    width=row.width,
                    height=row.height,
                    bytes=row.bytes,
                )
            )
    if ref[:5].lower() == "data:":
        return Source(data=decode_data_uri(ref, settings=settings))
    if ref[:7].lower() == "http://" or ref[:8].lower() == "https://":
        try:
            result = await net.fetch(
                ref, allow_networks=settings.networks, max_bytes=settings.max_image_bytes
            )
        except errors.UrlNotAllowed as exc:
            raise exc.about(field, hint=_LOCAL_IMAGE_HINT) from None
        return Source(data=result.content)
    if "://" in ref:
        raise errors.UrlNotAllowed("only http and https image URLs are allowed").about(
            field, hint=_LOCAL_IMAGE_HINT
        )
    raise errors.ValidationFailed(
        "image must be an http(s) URL, a data:image/…;base64 URI or an upload:// id",
        field="image",
    )


def store_source(source: Source, *, storage: Storage, settings: Settings) -> StoredImage:
    """Check a fetched image and store its bytes (blocking: decodes and writes a file)."""
    if source.stored is not None:
        return source.stored
    assert source.data is not None
    fmt, width, height = check_image(source.data, settings=settings)
    return _store(storage, source.data, fmt, width, height)


def create_upload(
    *, db: Database, settings: Settings, storage: Storage, account_id: str, data: bytes
) -> Upload:
    """Check and store an uploaded image; it can be used as `upload://ID` for 24 hours.

    The decode and the write happen before the transaction, which only inserts the row.
    """
    stored = store_source(Source(data=data), storage=storage, settings=settings)
    with db.session(write=True) as session:
        row = Upload(
            account_id=account_id,
            storage_key=stored.key,
            content_type=stored.content_type,
            bytes=stored.bytes,
            width=stored.width,
            height=stored.height,
            expires_at=utcnow() + timedelta(hours=settings.upload_ttl_hours),
        )
        session.add(row)
        session.flush()
    return row
