"""One settings object, read from `STILLMOTION_…` environment variables, with embedded defaults.

With no configuration at all, stillmotion runs on SQLite and local storage under `./var/`,
with worker threads inside the API process: `stillmotion serve` is a working server.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PRICES = {"gen-2": 2, "gen-3": 5, "gen-4": 20}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STILLMOTION_", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Root of the database file and local media.")
    database_url: str = Field("", description="SQLAlchemy URL; default sqlite under data_dir.")
    public_url: str = Field("http://127.0.0.1:8000", description="Base of absolute media URLs.")
    workers: int = Field(2, ge=0, le=64, description="Worker threads inside `serve`.")
    allow_networks: str = Field(
        "", description="Comma-separated CIDRs URL fetching may reach although not public."
    )
    redis_url: str = Field("", description="Shared rate-limit counters when set.")
    cors_origins: str = Field(
        "", description="Comma-separated origins browsers may call the API from ('*': any)."
    )
    read_limit_per_minute: int = Field(600, ge=1)
    auth_cache_seconds: float = Field(
        1.0, ge=0, description="How long a checked API key is trusted without a lookup."
    )
    intake_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Source images checked at once per API process (0: one per CPU).",
    )
    # Queue
    lease_seconds: float = Field(
        30.0, gt=0, description="A claimed job is re-claimable after this."
    )
    max_attempts: int = Field(3, ge=1)
    poll_interval: float = Field(0.1, gt=0, description="Idle worker's wait between queue checks.")
    # Engine
    x264_preset: str = "medium"
    x264_crf: int = Field(18, ge=0, le=51)
    render_timeout_seconds: float = Field(1800.0, gt=0)
    # Pricing (credits per second per version) and the brush multiplier
    price_gen2: int = 2
    price_gen3: int = 5
    price_gen4: int = 20
    brush_multiplier: float = 2.5
    low_credit_threshold: int = 100
    # Webhooks
    webhook_backoff_scale: float = Field(1.0, gt=0)
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60, description="Per attempt, total.")
    webhook_lease_seconds: float = Field(
        60.0, gt=0, description="A claimed delivery is re-claimable after this (sender died)."
    )
    webhook_poll_interval: float = Field(0.5, gt=0, description="Delivery loop's idle wait.")
    webhook_concurrency: int = Field(8, ge=1, le=64, description="Parallel sends per process.")
    webhook_secret_grace_hours: float = Field(
        24.0, ge=0, description="After a rotation, the previous secret still signs this long."
    )
    # Connections (`serve`)
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="A connection must send complete request headers in this."
    )
    keepalive_seconds: int = Field(
        5, ge=1, le=3600, description="An idle keep-alive connection is closed after this."
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Open connections per API process (lowered to fit the file-descriptor limit).",
    )
    access_log: bool = Field(True, description="One structured log line per request.")
    # Request size caps
    max_body_bytes: int = 8 * 1024 * 1024
    max_image_bytes: int = 16 * 1024 * 1024
    max_data_uri_bytes: int = 5 * 1024 * 1024
    upload_ttl_hours: int = 24
    # Services: the catalogue of services and the provider that renders each
    services: str = Field(
        "",
        description="A TOML service catalogue (services/catalogue.py); empty: runway-i2v → "
        "the built-in engine.",
    )

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("allow_networks")
    @classmethod
    def _valid_networks(cls, v: str) -> str:
        for part in filter(None, (p.strip() for p in v.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError as exc:
                raise ValueError(f"STILLMOTION_ALLOW_NETWORKS: {part!r} is not a CIDR") from exc
        return v

    @cached_property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.allow_networks.split(",")
            if p.strip()
        )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'stillmotion.db').resolve()}"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def services_path(self) -> Path | None:
        return Path(self.services.strip()) if self.services.strip() else None

    @property
    def prices(self) -> dict[str, int]:
        return {"gen-2": self.price_gen2, "gen-3": self.price_gen3, "gen-4": self.price_gen4}


_settings: Settings | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def set_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (CLI start-up and tests)."""
    global _settings
    _settings = settings
