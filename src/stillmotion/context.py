"""What the service layer needs from the running process: the database, the settings, the
storage, the service catalogue and its providers, and the process's short-lived caches. One
`Context` per API or worker process."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from stillmotion.config import Settings
from stillmotion.db import Database
from stillmotion.providers.registry import Providers
from stillmotion.services import catalogue as service_catalogue
from stillmotion.storage import Storage

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A bounded map whose entries expire `ttl` seconds after they were put.

    Thread-safe (readers run on the event loop and in worker threads); the oldest entry goes
    when it is full. `ttl` is read at each put, so a setting can change it.
    """

    def __init__(self, *, ttl: float | Callable[[], float], maxsize: int = 10_000) -> None:
        self._ttl = ttl
        self.maxsize = maxsize
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def ttl(self) -> float:
        return self._ttl() if callable(self._ttl) else self._ttl

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if hit[0] <= time.monotonic():
                del self._entries[key]
                return None
            return hit[1]

    def put(self, key: K, value: V) -> None:
        ttl = self.ttl
        if ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


QUEUED_VIEW_SECONDS = 0.5
"""How old a waiting job's `stage`/`queuePosition` may be when a poll is answered."""


@dataclass
class Caches:
    """The process's caches, each typed and bounded (what they hold is in `generations`,
    `accounts` and `deps`)."""

    keys: TTLCache[str, Any]  # API key → Principal, STILLMOTION_AUTH_CACHE_SECONDS
    plans: TTLCache[str, Any] = field(default_factory=lambda: TTLCache(ttl=1.0))  # → Limits
    waiting_views: TTLCache[str, dict] = field(
        default_factory=lambda: TTLCache(ttl=QUEUED_VIEW_SECONDS)
    )  # generation id → its view while it waits
    row_reader: Any = None  # SQLite: the event loop's own connection for polls (reads.py)


@dataclass(frozen=True)
class Context:
    """What the service needs from the running app."""

    db: Database
    settings: Settings
    storage: Storage
    caches: Caches = None  # type: ignore[assignment]  # made from the settings
    catalogue: service_catalogue.Catalogue = None  # type: ignore[assignment]
    """The services offered, read once per process (`STILLMOTION_SERVICES`, or the built-in
    catalogue); when not given, loaded here, which raises `CatalogueError` for a bad file."""
    providers: Providers = None  # type: ignore[assignment]
    """The catalogue's providers, each built on first use and kept for the process."""

    def __post_init__(self) -> None:
        settings = self.settings
        if self.caches is None:
            object.__setattr__(
                self, "caches", Caches(keys=TTLCache(ttl=lambda: settings.auth_cache_seconds))
            )
        if self.catalogue is None:
            object.__setattr__(self, "catalogue", load_catalogue(settings))
        if self.providers is None:
            object.__setattr__(self, "providers", Providers(self.catalogue, settings))


def load_catalogue(settings: Settings) -> service_catalogue.Catalogue:
    """The catalogue `settings` name (`STILLMOTION_SERVICES`; empty: the built-in one), priced
    by the server's `STILLMOTION_PRICE_*` where a table leaves a version's price out. Raises
    `CatalogueError`, one line naming the file, the table and the field."""
    return service_catalogue.load(settings.services_path, default_prices=settings.prices)
