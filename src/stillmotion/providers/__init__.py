"""Renderers behind one interface (`base.Provider`). The seed's service id maps to one by
configuration (`STILLMOTION_PROVIDER_RUNWAY_I2V`, `local` by default)."""

from __future__ import annotations

from stillmotion.config import Settings
from stillmotion.providers.base import Provider


def get_provider(name: str, *, settings: Settings) -> Provider:
    if name == "local":
        from stillmotion.providers.local import LocalProvider

        return LocalProvider(crf=settings.x264_crf, preset=settings.x264_preset)
    raise LookupError(f"unknown provider {name!r}")
