"""The request shape every transport parses into, with API.md §2's rules in one place."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from stillmotion import errors

SERVICES = ("runway-i2v",)
Amount = Annotated[float, Field(ge=-10, le=10)]


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


class GenerateRequest(BaseModel):
    """One generation request, whichever of the three shapes it came in."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    service: str = Field(description='Service id: "runway-i2v"')
    image: str | None = Field(None, description="URL, data URI or upload://upl_… id")
    image_url: str | None = Field(None, description="Same as image (one of them is required)")
    prompt: str = Field("", max_length=1000)
    duration: int = Field(5, ge=2, le=10)
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = "16:9"
    version: Literal["gen-2", "gen-3", "gen-4"] = "gen-3"
    motion_intensity: Literal["low", "medium", "high"] = "medium"
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    camera: Camera | None = None
    motion_brush: list[BrushRegion] | None = Field(None, max_length=5)
    loop: bool = False
    webhook_url: str | None = Field(None, max_length=2048)

    @field_validator("service")
    @classmethod
    def _known_service(cls, v: str) -> str:
        if v not in SERVICES:
            raise ValueError(f"unknown service {v!r}; known: {', '.join(SERVICES)}")
        return v

    @model_validator(mode="after")
    def _one_image(self) -> GenerateRequest:
        if bool(self.image) == bool(self.image_url):
            raise ValueError("exactly one of image and imageUrl is required")
        return self

    @property
    def source(self) -> str:
        return self.image or self.image_url or ""

    def fingerprint(self) -> dict[str, Any]:
        """The canonical form used to compare two requests (idempotency)."""
        data = self.model_dump(mode="json", exclude={"image", "image_url"})
        data["source"] = self.source
        return data


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


def parse_request(data: Any, *, prompt_required: bool = False) -> GenerateRequest:
    """Validate one request. `prompt_required`: the REST shape, whose seed table makes
    `prompt` mandatory (the GraphQL shapes leave it optional)."""
    if not isinstance(data, dict):
        raise errors.BadRequest("the request body must be a JSON object")
    if prompt_required and "prompt" not in data:
        raise errors.ValidationFailed("prompt: field required", field="prompt")
    try:
        return GenerateRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
