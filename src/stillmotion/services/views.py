"""A service as `/v1/services` and GraphQL `services` show it: one dict for both."""

from __future__ import annotations

from typing import Any

from pydantic.alias_generators import to_camel

from stillmotion.providers.registry import Providers
from stillmotion.services.catalogue import OPTIONS, ServiceSpec


def option_name(option: str) -> str:
    """A catalogue option (`motion_brush`) by its API name (`motionBrush`)."""
    return to_camel(option)


def service_view(spec: ServiceSpec, providers: Providers) -> dict[str, Any]:
    """The service's id, provider kind, what it takes and costs, and whether it can take jobs
    now (and why not): asked of its provider, which answers without network I/O."""
    available, reason = providers.availability(spec)
    return {
        "id": spec.id,
        "provider": spec.provider.value,
        "description": spec.description,
        "versions": list(spec.versions),
        "aspectRatios": list(spec.aspect_ratios),
        "durations": list(spec.durations),
        "prices": dict(spec.prices),
        "options": [option_name(o) for o in OPTIONS if o in spec.options],
        "available": available,
        "unavailableReason": None if available else reason,
    }


def services_view(providers: Providers) -> list[dict[str, Any]]:
    """Every service of the catalogue, in the file's order."""
    return [service_view(spec, providers) for spec in providers.catalogue]
