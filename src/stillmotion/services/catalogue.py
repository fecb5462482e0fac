"""The service catalogue: which services this server offers and which provider renders each.

The operator writes it as a TOML file (`STILLMOTION_SERVICES`), one `[services.<id>]` table a
service::

    [services.runway-i2v]
    provider = "runway"                           # local | runway | diffusion
    model = "gen4_turbo"                          # Runway's model id
    base_url = "https://api.dev.runwayml.com"     # the default; any Runway-compatible API
    api_key_env = "RUNWAYML_API_SECRET"           # the key is read from this variable
    [services.local]
    provider = "local"

Keys every table may set: `description`, `versions`, `aspect_ratios`, `durations` (a list, or
`{min, max}`), `prices` (credits per second per version; the rest from the server's
`STILLMOTION_PRICE_*`), `options` (which of camera, motion_brush, loop, end_frame, seed the
service takes). Runway's: `model`, `base_url`, `api_key_env`, `poll_interval`,
`deadline_seconds`, `request_timeout`, `allowed_output_hosts`, `output_networks`,
`max_output_bytes`, `download_timeout`, `unavailable_seconds` (see `RunwaySettings`).
A `diffusion` service is accepted with `model_dir` and a `pipeline` table passed through
unchecked: its provider is another issue's, and it is the provider that will check them.

Without a file the catalogue is `runway-i2v` → the built-in engine. A bad file raises
`CatalogueError`, one line naming the file, the table and the field.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx

from stillmotion import options as api_options
from stillmotion.config import DEFAULT_PRICES
from stillmotion.services import runway_models

__all__ = [
    "OPTIONS",
    "Catalogue",
    "CatalogueError",
    "DiffusionSettings",
    "LocalSettings",
    "ProviderKind",
    "RunwaySettings",
    "ServiceSpec",
    "default_catalogue",
    "load",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProviderKind(StrEnum):
    LOCAL = "local"
    RUNWAY = "runway"
    DIFFUSION = "diffusion"


OPTIONS = ("camera", "motion_brush", "loop", "end_frame", "seed")
"""The options a service may or may not take, by their Python names."""
_POSSIBLE_OPTIONS = {
    ProviderKind.LOCAL: frozenset({"camera", "motion_brush", "loop", "seed"}),
    ProviderKind.RUNWAY: frozenset({"seed", "end_frame"}),
    ProviderKind.DIFFUSION: frozenset(OPTIONS),
}
_DEFAULT_OPTIONS = {
    ProviderKind.LOCAL: frozenset({"camera", "motion_brush", "loop", "seed"}),
    ProviderKind.RUNWAY: frozenset({"seed"}),
    ProviderKind.DIFFUSION: frozenset({"seed"}),
}
_COMMON_KEYS = frozenset(
    {"provider", "description", "versions", "aspect_ratios", "durations", "prices", "options"}
)
_DIFFUSION_KEYS = frozenset({"model_dir", "pipeline"})
_ALL_DURATIONS = tuple(range(api_options.DURATION_MIN, api_options.DURATION_MAX + 1))
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_HOST = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CatalogueError(Exception):
    """The service catalogue cannot be used. The message is one line: the file, the table,
    the field and what is wrong with it."""


@dataclass(frozen=True)
class LocalSettings:
    """The built-in engine takes no settings of its own (x264's are the server's)."""


@dataclass(frozen=True)
class RunwaySettings:
    """How to reach a Runway-compatible API."""

    model: str
    """Runway's model id for versions `models` does not name."""
    models: Mapping[str, str]
    """Our version → Runway's model id, for every version of the service."""
    base_url: str = runway_models.DEFAULT_BASE_URL
    """Without a trailing slash; a path is kept as a prefix (`http://host/runway`)."""
    api_key_env: str = "RUNWAYML_API_SECRET"
    api_key: str = field(default="", repr=False)
    """Read from `api_key_env` at load; never printed."""
    poll_interval: float = 5.0
    """Seconds between polls of a task, at least (a jitter of up to half more is added)."""
    deadline_seconds: float = 600.0
    """How long upstream 429/5xx and network errors are backed off before the attempt gives up."""
    request_timeout: float = 30.0
    """Per API request (connect, read, write)."""
    allowed_output_hosts: tuple[str, ...] = ()
    """Hosts (`cdn.example.com`, or `*.example.com` for its subdomains) the output download may
    reach; empty: any host whose addresses are public. Runway serves outputs from hosts other
    than its API's, so the API host is not assumed."""
    output_networks: tuple[Network, ...] = ()
    """Networks the output download may reach although not public (a Runway-compatible server
    on a private network), on top of the server's `STILLMOTION_ALLOW_NETWORKS`."""
    max_output_bytes: int = 256 * 1024 * 1024
    download_timeout: float = 120.0
    unavailable_seconds: float = 300.0
    """After the upstream refuses the key or model (401/403), the service reports itself
    unavailable, and takes no job, for this long."""


@dataclass(frozen=True)
class DiffusionSettings:
    """Passed through to the diffusion provider (its own issue), which checks them."""

    model_dir: str | None = None
    pipeline: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


ProviderSettings = LocalSettings | RunwaySettings | DiffusionSettings


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the catalogue, as `/v1/services` shows it and a provider is built from."""

    id: str
    provider: ProviderKind
    description: str
    versions: tuple[str, ...]
    aspect_ratios: tuple[str, ...]
    durations: tuple[int, ...]
    """Every duration (whole seconds) the service renders, ascending."""
    prices: Mapping[str, int]
    """Credits per second, for each version."""
    options: frozenset[str]
    """Which of `OPTIONS` the service takes; a request setting another is refused."""
    settings: ProviderSettings


@dataclass(frozen=True)
class Catalogue:
    services: Mapping[str, ServiceSpec]
    source: Path | None = None
    """The file it was read from; None for the built-in catalogue."""

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.services)

    def get(self, service_id: str) -> ServiceSpec | None:
        return self.services.get(service_id)

    def __iter__(self) -> Iterator[ServiceSpec]:
        return iter(self.services.values())

    def __len__(self) -> int:
        return len(self.services)

    def __contains__(self, service_id: object) -> bool:
        return service_id in self.services


def default_catalogue(*, default_prices: Mapping[str, int] | None = None) -> Catalogue:
    """Today's catalogue: `runway-i2v` rendered by the built-in engine."""
    prices = dict(DEFAULT_PRICES if default_prices is None else default_prices)
    spec = ServiceSpec(
        id="runway-i2v",
        provider=ProviderKind.LOCAL,
        description="The built-in engine: cinematic motion on the CPU, no model weights.",
        versions=api_options.VERSIONS,
        aspect_ratios=api_options.ASPECT_RATIOS,
        durations=_ALL_DURATIONS,
        prices=MappingProxyType({v: prices[v] for v in api_options.VERSIONS}),
        options=_DEFAULT_OPTIONS[ProviderKind.LOCAL],
        settings=LocalSettings(),
    )
    return Catalogue(services=MappingProxyType({spec.id: spec}))


def load(
    path: Path | None,
    *,
    environ: Mapping[str, str] = os.environ,
    default_prices: Mapping[str, int] | None = None,
) -> Catalogue:
    """Read the catalogue from `path` (None: `default_catalogue`).

    `environ` is where `api_key_env` variables are read; `default_prices` (credits per second
    per version, normally `Settings.prices`) prices the versions a table's `prices` leaves out.
    Raises `CatalogueError`.
    """
    prices = dict(DEFAULT_PRICES if default_prices is None else default_prices)
    if path is None:
        return default_catalogue(default_prices=prices)
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise CatalogueError(f"{name}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{name}: not valid TOML: {_one_line(str(exc))}") from None
    for key in data:
        if key != "services":
            raise CatalogueError(f"{name}: {key}: unknown key (the file holds [services.<id>])")
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise CatalogueError(f"{name}: [services]: no [services.<id>] table")
    specs: dict[str, ServiceSpec] = {}
    for service_id, table in services.items():
        where = _Table(name, f"services.{service_id}", table)
        if not _ID.fullmatch(service_id):
            raise CatalogueError(
                f"{name}: [services.{service_id}]: a service id is letters, digits, '.', '_' "
                "and '-', at most 64, starting with a letter or digit"
            )
        if not isinstance(table, dict):
            raise CatalogueError(f"{name}: services.{service_id}: must be a table")
        specs[service_id] = _service(where, service_id, environ, prices)
    return Catalogue(services=MappingProxyType(specs), source=path)


# --- one table -------------------------------------------------------------------------------


class _Table:
    """A table being read: typed getters that name the field in the error."""

    def __init__(self, file: str, name: str, data: Any) -> None:
        self.file = file
        self.name = name
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}

    def error(self, key: str, message: str) -> CatalogueError:
        return CatalogueError(f"{self.file}: [{self.name}] {key}: {_one_line(message)}")

    def check_keys(self, allowed: frozenset[str], kind: ProviderKind) -> None:
        for key in self.data:
            if key == "api_key" and "api_key_env" in allowed:
                raise self.error(
                    key, "keys are not read from the file: name the variable in api_key_env"
                )
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.error(key, f"unknown key for provider {kind.value!r} (known: {known})")

    def string(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self.error(key, "is required")
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_type(value)}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {_type(value)}")
        if not value > minimum:
            raise self.error(key, f"must be more than {minimum:g}, not {value!r}")
        return float(value)

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {_type(value)}")
        if value <= 0:
            raise self.error(key, f"must be positive, not {value!r}")
        return value

    def strings(self, key: str) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of strings, not {_type(value)}")
        if not value:
            raise self.error(key, "must not be empty")
        if len(set(value)) != len(value):
            raise self.error(key, "lists a value twice")
        return value


def _service(
    t: _Table, service_id: str, environ: Mapping[str, str], default_prices: dict[str, int]
) -> ServiceSpec:
    kind_text = t.string("provider")
    try:
        kind = ProviderKind(kind_text)
    except ValueError:
        known = ", ".join(k.value for k in ProviderKind)
        raise t.error("provider", f"unknown provider {kind_text!r} (known: {known})") from None
    description = t.string("description", "")
    settings: ProviderSettings
    if kind is ProviderKind.RUNWAY:
        t.check_keys(_COMMON_KEYS | _RUNWAY_KEYS, kind)
        settings, versions = _runway(t, environ)
        models = [runway_models.MODELS[m] for m in dict.fromkeys(settings.models.values())]
        ratios = [r for r in api_options.ASPECT_RATIOS if all(r in m.ratios for m in models)]
        durations = [d for d in _ALL_DURATIONS if all(d in m.durations for m in models)]
        if not ratios or not durations:
            raise t.error("versions", "their models have no aspect ratio or duration in common")
    else:
        diffusion = kind is ProviderKind.DIFFUSION
        t.check_keys(_COMMON_KEYS | (_DIFFUSION_KEYS if diffusion else frozenset()), kind)
        versions = _versions(t, free=diffusion)
        ratios, durations = list(api_options.ASPECT_RATIOS), list(_ALL_DURATIONS)
        settings = _diffusion(t) if diffusion else LocalSettings()
    aspect_ratios = _subset(t, "aspect_ratios", ratios)
    duration_list = _durations(t, durations)
    return ServiceSpec(
        id=service_id,
        provider=kind,
        description=description,
        versions=tuple(versions),
        aspect_ratios=tuple(aspect_ratios),
        durations=tuple(duration_list),
        prices=_prices(t, versions, default_prices),
        options=_options(t, kind, settings),
        settings=settings,
    )


def _versions(t: _Table, *, free: bool) -> list[str]:
    given = t.strings("versions")
    if given is None:
        return list(api_options.VERSIONS)
    for version in given:
        if free and not _VERSION.fullmatch(version):
            raise t.error("versions", f"{version!r} is not a version name")
        if not free and version not in api_options.VERSIONS:
            known = ", ".join(api_options.VERSIONS)
            raise t.error("versions", f"unknown version {version!r} (known: {known})")
    return given


def _subset(t: _Table, key: str, possible: list[str]) -> list[str]:
    given = t.strings(key)
    if given is None:
        return possible
    for value in given:
        if value not in possible:
            raise t.error(key, f"{value!r} is not one of {', '.join(possible)}")
    return given


def _durations(t: _Table, possible: list[int]) -> list[int]:
    value = t.data.get("durations")
    if value is None:
        return possible
    if isinstance(value, dict):
        unknown = set(value) - {"min", "max"}
        if unknown:
            raise t.error("durations", f"unknown key {sorted(unknown)[0]!r} (min, max)")
        low, high = value.get("min", possible[0]), value.get("max", possible[-1])
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            raise t.error("durations", "min and max must be integers (seconds)")
        if low > high:
            raise t.error("durations", f"min {low} is more than max {high}")
        values = list(range(low, high + 1))
        outside = [v for v in (low, high) if v not in possible]
        values = [v for v in values if v in possible]
    elif isinstance(value, list) and value:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise t.error("durations", "must be whole seconds (integers)")
        outside = [v for v in value if v not in possible]
        values = sorted(set(value))
    else:
        raise t.error("durations", f"must be a list or {{min, max}}, not {_type(value)}")
    if outside or not values:
        shown = outside[0] if outside else value
        raise t.error("durations", f"{shown!r} is not one of {_ranges(possible)}")
    return values


def _prices(t: _Table, versions: list[str], defaults: dict[str, int]) -> Mapping[str, int]:
    value = t.data.get("prices", {})
    if not isinstance(value, dict):
        raise t.error("prices", f"must be a table of version = credits, not {_type(value)}")
    prices: dict[str, int] = {}
    for version, credits in value.items():
        if version not in versions:
            raise t.error("prices", f"{version!r} is not a version of this service")
        if isinstance(credits, bool) or not isinstance(credits, int) or credits < 0:
            raise t.error("prices", f"{version}: credits per second, a whole number ≥ 0")
        prices[version] = credits
    for version in versions:
        if version not in prices:
            if version not in defaults:
                raise t.error("prices", f"no price for version {version!r}")
            prices[version] = defaults[version]
    return MappingProxyType({v: prices[v] for v in versions})


def _options(t: _Table, kind: ProviderKind, settings: ProviderSettings) -> frozenset[str]:
    if "options" not in t.data:
        return _DEFAULT_OPTIONS[kind]
    if t.data["options"] == []:
        return frozenset()
    given = t.strings("options") or []
    for option in given:
        if option not in OPTIONS:
            raise t.error("options", f"unknown option {option!r} (known: {', '.join(OPTIONS)})")
        if option not in _POSSIBLE_OPTIONS[kind]:
            raise t.error("options", f"provider {kind.value!r} cannot take {option!r}")
        if option == "end_frame" and isinstance(settings, RunwaySettings):
            for model in settings.models.values():
                if not runway_models.MODELS[model].last_frame:
                    raise t.error("options", f"Runway's {model} takes no end frame")
    return frozenset(given)


# --- provider settings -----------------------------------------------------------------------

_RUNWAY_KEYS = frozenset(
    {
        "model",
        "base_url",
        "api_key_env",
        "poll_interval",
        "deadline_seconds",
        "request_timeout",
        "allowed_output_hosts",
        "output_networks",
        "max_output_bytes",
        "download_timeout",
        "unavailable_seconds",
    }
)


def _runway(t: _Table, environ: Mapping[str, str]) -> tuple[RunwaySettings, list[str]]:
    model = _runway_model(t, "model", t.string("model"))
    raw = t.data.get("versions")
    if isinstance(raw, dict):
        models: dict[str, str] = {}
        for version, upstream in raw.items():
            if not _VERSION.fullmatch(version):
                raise t.error("versions", f"{version!r} is not a version name")
            if not isinstance(upstream, str):
                raise t.error("versions", f"{version}: a Runway model id, not {_type(upstream)}")
            models[version] = _runway_model(t, "versions", upstream)
        if not models:
            raise t.error("versions", "must not be empty")
        versions = list(models)
    else:
        versions = _versions(t, free=True)
        models = dict.fromkeys(versions, model)
    base_url = _base_url(t)
    env_name = t.string("api_key_env", "RUNWAYML_API_SECRET")
    if not _ENV_NAME.fullmatch(env_name):
        raise t.error("api_key_env", f"{env_name!r} is not an environment variable name")
    api_key = environ.get(env_name, "")
    if not api_key.strip():
        raise t.error("api_key_env", f"{env_name} is not set")
    hosts = t.strings("allowed_output_hosts") or []
    for host in hosts:
        if not _HOST.fullmatch(host):
            raise t.error("allowed_output_hosts", f"{host!r} is not a host name (or *.domain)")
    networks: list[Network] = []
    for cidr in t.strings("output_networks") or []:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise t.error("output_networks", f"{cidr!r} is not a network (CIDR)") from None
    settings = RunwaySettings(
        model=model,
        models=MappingProxyType(models),
        base_url=base_url,
        api_key_env=env_name,
        api_key=api_key.strip(),
        poll_interval=t.number("poll_interval", 5.0),
        deadline_seconds=t.number("deadline_seconds", 600.0),
        request_timeout=t.number("request_timeout", 30.0),
        allowed_output_hosts=tuple(hosts),
        output_networks=tuple(networks),
        max_output_bytes=t.integer("max_output_bytes", 256 * 1024 * 1024),
        download_timeout=t.number("download_timeout", 120.0),
        unavailable_seconds=t.number("unavailable_seconds", 300.0),
    )
    return settings, versions


def _runway_model(t: _Table, key: str, model: str) -> str:
    if model not in runway_models.MODELS:
        known = ", ".join(runway_models.MODELS)
        raise t.error(key, f"unknown Runway model {model!r} (known: {known})")
    return model


def _base_url(t: _Table) -> str:
    text = t.string("base_url", runway_models.DEFAULT_BASE_URL)
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError):
        raise t.error("base_url", f"{text!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise t.error("base_url", f"{text!r} is not an http(s) URL with a host")
    if url.query or url.fragment or url.userinfo:
        raise t.error("base_url", "must have no query, fragment, user name or password")
    return text.rstrip("/")


def _diffusion(t: _Table) -> DiffusionSettings:
    model_dir = t.data.get("model_dir")
    if model_dir is not None and not isinstance(model_dir, str):
        raise t.error("model_dir", f"must be a string (a folder), not {_type(model_dir)}")
    pipeline = t.data.get("pipeline", {})
    if not isinstance(pipeline, dict):
        raise t.error("pipeline", f"must be a table, not {_type(pipeline)}")
    return DiffusionSettings(model_dir=model_dir, pipeline=MappingProxyType(dict(pipeline)))


# --- wording ---------------------------------------------------------------------------------


def _type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _ranges(values: list[int]) -> str:
    if values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{values[0]}…{values[-1]}"
    return ", ".join(map(str, values))


def _one_line(text: str) -> str:
    return " ".join(text.split())
