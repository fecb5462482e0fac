"""The request shape every transport parses into, with API.md §2's rules in one place."""

from __future__ import annotations

import difflib
import json
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from stillmotion import errors, options

Amount = Annotated[float, Field(ge=options.CAMERA_MIN, le=options.CAMERA_MAX)]


class Camera(BaseModel):
    """*Extension*: an explicit camera move. Each axis −10 … 10; see docs for the signs."""

    model_config = ConfigDict(extra="forbid")

    horizontal: Amount = 0
    vertical: Amount = 0
    pan: Amount = 0
    tilt: Amount = 0
    zoom: Amount = 0
    roll: Amount = 0
    static: bool = False


class BrushRegion(BaseModel):
    """*Extension*: one motion-brush region."""

    model_config = ConfigDict(extra="forbid")

    mask: str | list[list[float]]
    horizontal: Amount = 0
    vertical: Amount = 0
    proximity: Amount = 0
    ambient: Amount = 0


class GenerationOptions(BaseModel):
    """What a generation renders: the one declaration of its options (API.md §2), with the
    ranges of `stillmotion.options`. Every option is a column of `generations` of the same
    name, travels to the provider in `RenderJob.options`, and becomes a field of the GraphQL
    inputs (`generations/gql.py` builds them from this class). A new option is a field here,
    a column (and its migration), and what the engine does with it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    prompt: str = Field("", max_length=options.PROMPT_MAX)
    duration: int = Field(
        options.DURATION_DEFAULT, ge=options.DURATION_MIN, le=options.DURATION_MAX
    )
    motion_intensity: options.MotionIntensity = "medium"
    version: options.Version = "gen-3"
    aspect_ratio: options.AspectRatio = "16:9"
    seed: int | None = Field(None, ge=0, le=options.SEED_MAX)
    camera: Camera | None = None
    motion_brush: list[BrushRegion] | None = Field(None, max_length=options.MOTION_BRUSH_MAX)
    loop: bool = False
    width: int | None = Field(
        None,
        ge=options.SIZE_MIN,
        le=options.SIZE_MAX,
        multiple_of=2,
        description="*Extension*: the output width in pixels, with height (default: the "
        "version's size for the aspect ratio)",
    )
    height: int | None = Field(
        None,
        ge=options.SIZE_MIN,
        le=options.SIZE_MAX,
        multiple_of=2,
        validate_default=True,
        description="See width",
    )

    @field_validator("height")
    @classmethod
    def _with_width(cls, v: int | None, info: ValidationInfo) -> int | None:
        if "width" in info.data and (v is None) != (info.data["width"] is None):
            raise ValueError("width and height go together: give both, or neither")
        return v

    def option_values(self) -> dict[str, Any]:
        """The options as JSON values by their Python names: the row's columns and the
        provider's `RenderJob.options`."""
        return self.model_dump(include=set(OPTION_NAMES))


class GenerateRequest(GenerationOptions):
    """One generation request, whichever of the three shapes it came in."""

    service: str = Field(
        max_length=64,
        description='Service id, one of `GET /v1/services` (by default "runway-i2v")',
    )
    image: str | None = Field(None, description="URL, data URI or upload://upl_… id")
    image_url: str | None = Field(None, description="Same as image (one of them is required)")
    webhook_url: str | None = Field(None, max_length=2048)

    @model_validator(mode="after")
    def _one_image(self) -> GenerateRequest:
        if bool(self.image) == bool(self.image_url):
            raise ValueError("exactly one of image and imageUrl is required")
        return self

    @property
    def source(self) -> str:
        return self.image or self.image_url or ""

    @property
    def source_field(self) -> str:
        """The API name of the field that holds the image."""
        return "image" if self.image else "imageUrl"


OPTION_NAMES: tuple[str, ...] = tuple(GenerationOptions.model_fields)


def validation_error(exc: ValidationError, *, prefix: str = "") -> errors.ValidationFailed:
    """The first pydantic error as our `ValidationFailed`, with the API field name."""
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = ".".join(_camel(p) for p in loc) or None
    if first.get("type") == "value_error" and not loc:
        field = "image" if "image" in first.get("msg", "") else None
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    if field:
        message = f"{prefix}{field}: {message}"
    return errors.ValidationFailed(message, field=field)


def _camel(part: str) -> str:
    return to_camel(part) if not part.isdigit() else part


# --- unknown fields (REST): ignored, so seed clients keep working, but reported -------------

STRICT_HEADER = "Stillmotion-Strict"
WARNING_HEADER = "Stillmotion-Warning"
_API_NAMES = tuple(f.alias or name for name, f in GenerateRequest.model_fields.items())
_KNOWN = frozenset(_API_NAMES) | frozenset(GenerateRequest.model_fields)
_SHOWN_NAMES, _SHOWN_CHARS = 10, 64


def unknown_fields(data: dict[str, Any]) -> list[str]:
    """The top-level keys of a request body that are no field (nested objects already refuse
    theirs)."""
    return [name for name in data if name not in _KNOWN]


def _quoted(name: str) -> str:
    """A field name as printable ASCII, quoted and cut short: safe in a header or a log."""
    return json.dumps(name[:_SHOWN_CHARS])


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name, _API_NAMES, n=1, cutoff=0.6)
    return f" (did you mean {_quoted(close[0])}?)" if close else ""


def unknown_fields_warning(names: list[str]) -> str:
    """The `Stillmotion-Warning` value naming ignored fields (at most ten, then a count)."""
    shown = ", ".join(_quoted(n) + _suggestion(n) for n in names[:_SHOWN_NAMES])
    more = f" and {len(names) - _SHOWN_NAMES} more" if len(names) > _SHOWN_NAMES else ""
    noun = "field" if len(names) == 1 else "fields"
    return f"unknown {noun} ignored: {shown}{more}"


def strict_requested(value: str | None) -> bool:
    """The `Stillmotion-Strict` request header: `true`/`1` refuses unknown fields."""
    if value is None:
        return False
    flag = value.strip().lower()
    if flag in ("true", "1"):
        return True
    if flag in ("false", "0", ""):
        return False
    raise errors.ValidationFailed(f"{STRICT_HEADER} must be true or false", field=STRICT_HEADER)


def parse_request(
    data: Any, *, prompt_required: bool = False, strict: bool = False
) -> GenerateRequest:
    """Validate one request. `prompt_required`: the REST shape, whose seed table makes
    `prompt` mandatory (the GraphQL shapes leave it optional). `strict`: an unknown field is
    a validation error instead of being ignored."""
    if not isinstance(data, dict):
        raise errors.BadRequest("the request body must be a JSON object")
    if strict and (unknown := unknown_fields(data)):
        name = unknown[0]
        raise errors.ValidationFailed(
            f"unknown field {_quoted(name)}{_suggestion(name)} ({STRICT_HEADER} is on)",
            field=name[:_SHOWN_CHARS],
        )
    if prompt_required and "prompt" not in data:
        raise errors.ValidationFailed("prompt: field required", field="prompt")
    try:
        return GenerateRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
