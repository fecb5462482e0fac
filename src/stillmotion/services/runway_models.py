"""Runway's models as its developer API defines them (`../shared/RUNWAY.md`, API version
2024-11-06): which pixel ratios and durations each model accepts and how our aspect ratios map
onto them. Imports nothing, so the service catalogue can check a file against it without
loading the provider."""

from __future__ import annotations

from dataclasses import dataclass

API_VERSION = "2024-11-06"
DEFAULT_BASE_URL = "https://api.dev.runwayml.com"
DATA_URI_MAX = 5_000_000
"""A `promptImage` data URI is at most 5 MB; we count the URI's characters against 5,000,000,
which satisfies every reading of "5 MB" (decoded or encoded, 10⁶ or 2²⁰)."""
PROMPT_TEXT_MAX = 1000


@dataclass(frozen=True)
class RunwayModel:
    id: str
    ratios: dict[str, str]
    """Our aspect ratio → Runway's pixel ratio, for the ratios this model has."""
    durations: tuple[int, ...]
    last_frame: bool = False
    """Whether `promptImage` may carry a `last` frame (our `end_frame` option)."""
    prompt_required: bool = False


_GEN4_RATIOS = {"16:9": "1280:720", "9:16": "720:1280", "1:1": "960:960"}
MODELS: dict[str, RunwayModel] = {
    model.id: model
    for model in (
        RunwayModel("gen4_turbo", _GEN4_RATIOS, tuple(range(2, 11))),
        RunwayModel("gen4.5", _GEN4_RATIOS, tuple(range(2, 11)), prompt_required=True),
        RunwayModel("gen3a_turbo", {"16:9": "1280:768", "9:16": "768:1280"}, (5, 10), True),
        RunwayModel("veo3.1", {"16:9": "1280:720", "9:16": "720:1280"}, (4, 6, 8), True),
        RunwayModel("veo3.1_fast", {"16:9": "1280:720", "9:16": "720:1280"}, (4, 6, 8), True),
    )
}
