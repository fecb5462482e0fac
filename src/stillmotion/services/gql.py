"""GraphQL: `services`, the catalogue (the same view as `GET /v1/services`)."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from stillmotion.services.views import services_view


@strawberry.type
class Service:
    id: strawberry.ID
    provider: str
    description: str
    versions: list[str]
    aspect_ratios: list[str]
    durations: list[int]
    prices: JSON = strawberry.field(description="Credits per second of video, by version.")
    options: list[str] = strawberry.field(
        description="The options it takes, of camera, motionBrush, loop, endFrame, seed."
    )
    available: bool
    unavailable_reason: str | None

    @classmethod
    def from_view(cls, d: dict[str, Any]) -> Service:
        return cls(
            id=strawberry.ID(d["id"]),
            provider=d["provider"],
            description=d["description"],
            versions=d["versions"],
            aspect_ratios=d["aspectRatios"],
            durations=d["durations"],
            prices=d["prices"],
            options=d["options"],
            available=d["available"],
            unavailable_reason=d["unavailableReason"],
        )


@strawberry.type
class Query:
    @strawberry.field(description="The services this server offers, and whether each is up.")
    def services(self, info: Info) -> list[Service]:
        info.context["principal"]()  # authenticated, as every query is
        return [Service.from_view(d) for d in services_view(info.context["ctx"].providers)]
