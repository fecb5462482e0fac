"""The process's providers: one per service of the catalogue, built on first use and kept.

A provider holds what must outlive a request (Runway's connection pool, and its memory of the
upstream refusing the key), so it is built once per process, never per request or per job.
`availability` answers from that memory alone: no network I/O, so `/v1/services` can ask it
on the request path.
"""

from __future__ import annotations

import threading

from stillmotion.config import Settings
from stillmotion.providers.base import Provider
from stillmotion.providers.local import LocalProvider
from stillmotion.providers.runway import RunwayProvider
from stillmotion.services.catalogue import Catalogue, ProviderKind, ServiceSpec

__all__ = ["WORKER_KINDS", "Providers"]

WORKER_KINDS = frozenset({ProviderKind.LOCAL, ProviderKind.RUNWAY})
"""The provider kinds this version's workers render. A service of another kind (`diffusion`,
its own issue) is listed unavailable, and a create for it is refused (503) instead of
accepted, charged and failed."""


class Providers:
    """The providers of one catalogue's services, by service id. Thread-safe."""

    def __init__(self, catalogue: Catalogue, settings: Settings) -> None:
        self.catalogue = catalogue
        self.settings = settings
        self._built: dict[str, Provider] = {}
        self._lock = threading.Lock()

    def get(self, spec: ServiceSpec) -> Provider:
        """The provider of `spec`, built the first time it is asked for.
        `LookupError` for a provider kind this version cannot build (`diffusion`)."""
        provider = self._built.get(spec.id)
        if provider is not None:
            return provider
        with self._lock:
            provider = self._built.get(spec.id)
            if provider is None:
                provider = self._built[spec.id] = self._build(spec)
            return provider

    def _build(self, spec: ServiceSpec) -> Provider:
        if spec.provider is ProviderKind.LOCAL:
            return LocalProvider(crf=self.settings.x264_crf, preset=self.settings.x264_preset)
        if spec.provider is ProviderKind.RUNWAY:
            return RunwayProvider.from_spec(spec, allow_networks=self.settings.networks)
        raise LookupError(f"the {spec.provider.value} provider is not part of this version")

    def availability(self, spec: ServiceSpec) -> tuple[bool, str | None]:
        """Whether `spec` can take jobs now, and why not. No network I/O."""
        if spec.provider is ProviderKind.LOCAL:
            return True, None
        try:
            provider = self.get(spec)
        except LookupError as exc:
            return False, str(exc)
        check = getattr(provider, "availability", None)
        available, reason = check() if check is not None else (True, None)
        if available and spec.provider not in WORKER_KINDS:
            return False, f"the {spec.provider.value} provider is not run by workers yet"
        return available, reason

    def counters(self) -> dict[str, dict[str, int]]:
        """Each built provider's own event counts (Runway: creates, polls, downloads,
        refusals, backoffs, cancels), by service id: this process's, for its metrics."""
        with self._lock:
            built = dict(self._built)
        return {
            service: provider.counters()
            for service, provider in built.items()
            if callable(getattr(provider, "counters", None))
        }

    def close(self) -> None:
        with self._lock:
            built, self._built = self._built, {}
        for provider in built.values():
            close = getattr(provider, "close", None)
            if close is not None:
                close()
