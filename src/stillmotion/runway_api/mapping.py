"""What the Runway-compatible surface translates, and nothing else: Runway's model ids to our
services and versions, its pixel ratios to an output size, our job to Runway's task object, and
our errors to Runway's `{"error": …}` bodies (docs/api.md, "Runway-compatible surface").

Presenters only: every rule (options and ranges, credits, limits, states) stays where
docs/architecture.md's table puts it; this module names the Runway side of each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response

from stillmotion import errors

VERSION_HEADER = "x-runway-version"
VERSION_CURRENT = "2024-11-06"
VERSION_LEGACY = "2024-09-13"  # before November 2024: ratio "16:9" | "9:16"
VERSIONS = (VERSION_CURRENT, VERSION_LEGACY)
EXTENSION = "stillmotion"
"""The namespaced object that carries what Runway's API lacks, in requests and in tasks."""

GEN4_RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
GEN3_RATIOS = ("1280:768", "768:1280")


@dataclass(frozen=True)
class Model:
    """One Runway model id as this server offers it."""

    service: str
    version: str
    ratios: tuple[str, ...]
    durations: tuple[int, ...]
    default_duration: int | None  # None: `duration` is required
    ratio_required: bool
    prompt_required: bool = False
    legacy_ratios: tuple[tuple[str, str], ...] = ()  # X-Runway-Version 2024-09-13's ratios


MODELS: dict[str, Model] = {
    "gen4_turbo": Model(
        service="runway-i2v",
        version="gen-4",
        ratios=GEN4_RATIOS,
        durations=tuple(range(2, 11)),
        default_duration=10,
        ratio_required=True,
        legacy_ratios=(("16:9", "1280:720"), ("9:16", "720:1280")),
    ),
    "gen4.5": Model(
        service="runway-i2v",
        version="gen-4",
        ratios=GEN4_RATIOS,
        durations=tuple(range(2, 11)),
        default_duration=None,
        ratio_required=True,
        prompt_required=True,
        legacy_ratios=(("16:9", "1280:720"), ("9:16", "720:1280")),
    ),
    "gen3a_turbo": Model(
        service="runway-i2v",
        version="gen-3",
        ratios=GEN3_RATIOS,
        durations=(5, 10),
        default_duration=10,
        ratio_required=False,
        legacy_ratios=(("16:9", "1280:768"), ("9:16", "768:1280")),
    ),
}
"""The default mapping (module level: an operator's catalogue may replace it once the service
catalogue is wired, issue 11)."""

_ASPECTS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0}


def model_for(name: Any) -> Model:
    """The model, or Runway's 403 for one this server does not offer."""
    if not isinstance(name, str) or not name:
        raise errors.ValidationFailed("Invalid parameter 'model': a model id is required")
    model = MODELS.get(name)
    if model is None:
        raise errors.Forbidden(f"Model variant {name[:64]} is not available")
    return model


def pixel_size(model: Model, ratio: Any, *, api_version: str) -> tuple[int, int]:
    """`ratio` as (width, height) in pixels; 400 naming `ratio` and the allowed ones."""
    if ratio is None:
        if model.ratio_required:
            raise _bad_ratio(model, api_version, "is required")
        ratio = model.ratios[0]
    legacy = dict(model.legacy_ratios)
    if api_version == VERSION_LEGACY:
        if ratio not in legacy:
            raise _bad_ratio(model, api_version, f"{errors.quote(ratio)} is not allowed")
        ratio = legacy[ratio]
    elif ratio not in model.ratios:
        hint = f" ({ratio} is X-Runway-Version {VERSION_LEGACY}'s form)" if ratio in legacy else ""
        raise _bad_ratio(model, api_version, f"{errors.quote(ratio)} is not allowed{hint}")
    width, _, height = ratio.partition(":")
    return int(width), int(height)


def _bad_ratio(model: Model, api_version: str, what: str) -> errors.ValidationFailed:
    allowed = (
        [name for name, _ in model.legacy_ratios]
        if api_version == VERSION_LEGACY
        else list(model.ratios)
    )
    return errors.ValidationFailed(
        f"Invalid parameter 'ratio': {what}; allowed: {', '.join(allowed)}", field="ratio"
    )


def nearest_aspect(width: int, height: int) -> str:
    """The native `aspectRatio` closest to a pixel size (by the ratio's logarithm)."""
    ratio = width / height
    return min(_ASPECTS, key=lambda name: abs(math.log(ratio / _ASPECTS[name])))


# --- the task object ---------------------------------------------------------------------------

FAILURE_CODES = {"INVALID_IMAGE": "INPUT_PREPROCESSING.INTERNAL"}
"""Our job error codes as Runway failure codes; any other is `INTERNAL.<our code>`."""


def task(view: dict[str, Any]) -> dict[str, Any]:
    """Runway's task object from our generation view (API.md §3)."""
    out: dict[str, Any] = {"id": view["id"], "createdAt": view["createdAt"]}
    status, stage = view["status"], view["stage"]
    if status == "processing":
        if stage in ("queued", "throttled"):
            out["status"] = "PENDING" if stage == "queued" else "THROTTLED"
            out[EXTENSION] = {"queuePosition": view["queuePosition"]}
        else:
            out["status"] = "RUNNING"
            out["progress"] = view["progress"]
        out["estimatedCost"] = {"credits": view["creditCost"]}
        return out
    if status == "completed":
        out["status"] = "SUCCEEDED"
        out["output"] = [view["url"]]
        out["cost"] = {"credits": view["creditCost"]}
        return out
    # Failed and cancelled jobs are refunded in full.
    out["cost"] = {"credits": 0}
    if status == "failed":
        error = view.get("error") or {}
        code = error.get("code") or "RENDER_FAILED"
        out["status"] = "FAILED"
        out["failure"] = error.get("message") or "the render failed"
        out["failureCode"] = FAILURE_CODES.get(code, f"INTERNAL.{code}")
    else:
        out["status"] = "CANCELLED"
    return out


# --- errors ------------------------------------------------------------------------------------

FIELD_NAMES = {
    "imageUrl": "promptImage",
    "image": "promptImage",
    "prompt": "promptText",
    "aspectRatio": "ratio",
    "width": "ratio",
    "height": "ratio",
    "webhookUrl": f"{EXTENSION}.webhookUrl",
    "camera": f"{EXTENSION}.camera",
    "motionBrush": f"{EXTENSION}.motionBrush",
    "loop": f"{EXTENSION}.loop",
}


def error_body(exc: errors.StillmotionError) -> dict[str, Any]:
    """`{"error": message}`; a field error names Runway's parameter: "Invalid parameter 'x'"."""
    message = exc.message
    field = exc.extensions.get("field")
    if field and not message.startswith("Invalid parameter"):
        head, _, rest = field.partition(".")
        name = FIELD_NAMES.get(head, head) + (f".{rest}" if rest else "")
        detail = message.removeprefix(f"{field}: ")
        message = f"Invalid parameter '{name}': {detail}"
    return {"error": message}


def status_of(exc: errors.StillmotionError) -> int:
    """Runway's status for our error: 402 (no credits) is Runway's 400; the rest keep ours."""
    return 400 if isinstance(exc, errors.InsufficientCredits) else exc.status


def error_response(exc: errors.StillmotionError) -> Response:
    headers = dict(exc.headers)
    headers.pop("WWW-Authenticate", None)
    if isinstance(exc, errors.DailyLimitExceeded):
        # Runway's SDKs honour this; a Node client would otherwise sleep until a far
        # Retry-After (it honours any value).
        headers["x-should-retry"] = "false"
    return JSONResponse(error_body(exc), status_code=status_of(exc), headers=headers)
