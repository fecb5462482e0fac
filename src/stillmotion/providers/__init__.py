"""Renderers behind one interface (`base.Provider`). Each service of the catalogue
(`STILLMOTION_SERVICES`) names its provider kind; `registry.Providers` builds one per service.
`get_provider` builds one by the kind a job's row names (`local` only, until the workers take
their providers from the registry)."""

from __future__ import annotations

from stillmotion.config import Settings
from stillmotion.providers.base import Provider


def get_provider(name: str, *, settings: Settings) -> Provider:
    if name == "local":
        from stillmotion.providers.local import LocalProvider

        return LocalProvider(crf=settings.x264_crf, preset=settings.x264_preset)
    raise LookupError(f"unknown provider {name!r}")
