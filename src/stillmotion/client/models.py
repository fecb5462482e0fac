"""Typed, frozen results. Each is built from the API's camelCase JSON, REST or GraphQL alike.

`from_dict` maps every known camelCase key to its snake_case field; the whole object as the
server sent it stays in `.raw`, so a field this SDK does not know yet is never lost.
`to_dict` gives the camelCase JSON back.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def parse_datetime(value: Any) -> datetime | None:
    """An ISO 8601 timestamp (`…Z` or with an offset) as an aware datetime; naive means UTC."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return re.sub(r"\+00:00$", "Z", text)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Model:
    """Base of the result types: camelCase JSON in and out, `.raw` keeps the original."""

    _nested: ClassVar[Mapping[str, type[_Model]]] = {}
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "raw":
                continue
            key = _camel(f.name)
            if key not in data:
                continue
            value = data[key]
            if "datetime" in str(f.type):
                value = parse_datetime(value)
            elif f.name in cls._nested and isinstance(value, Mapping):
                value = cls._nested[f.name].from_dict(value)
            elif f.name in cls._nested and isinstance(value, list):
                value = tuple(cls._nested[f.name].from_dict(v) for v in value)
            kwargs[f.name] = cls._convert(f.name, value)
        return cls(raw=dict(data), **kwargs)

    @classmethod
    def _convert(cls, name: str, value: Any) -> Any:
        return value

    def to_dict(self) -> dict[str, Any]:
        """The camelCase JSON: the fields the server sent, and any unknown ones from `.raw`."""
        out = dict(self.raw)
        for f in dataclasses.fields(self):
            if f.name == "raw":
                continue
            key = _camel(f.name)
            if key not in self.raw and getattr(self, f.name) is None:
                continue
            value = getattr(self, f.name)
            if isinstance(value, _Model):
                value = value.to_dict()
            elif isinstance(value, tuple) and all(isinstance(v, _Model) for v in value):
                value = [v.to_dict() for v in value]
            elif isinstance(value, datetime):
                original = self.raw.get(key)
                same = isinstance(original, str) and parse_datetime(original) == value
                value = original if same else format_datetime(value)
            out[key] = value
        return out

    @classmethod
    def known_keys(cls) -> frozenset[str]:
        """The camelCase keys this model maps to fields."""
        return frozenset(_camel(f.name) for f in dataclasses.fields(cls) if f.name != "raw")

    def unknown(self) -> dict[str, Any]:
        """The keys of `.raw` this model has no field for."""
        known = self.known_keys()
        return {k: v for k, v in self.raw.items() if k not in known}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerationMetadata(_Model):
    """What the clip is (or will be): size, length, frame rate, version, seed, file size."""

    duration: int | None = None
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    frames: int | None = None
    version: str | None = None
    aspect_ratio: str | None = None
    motion_intensity: str | None = None
    seed: int | None = None
    bytes: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerationError(_Model):
    """Why a generation failed: `code` is one of API.md §6's job codes."""

    code: str = ""
    message: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Generation(_Model):
    """The generation object of API.md §3.

    `status` is `processing` until the job is final (`completed`, `failed`, `cancelled`);
    the finer state is `stage`.
    """

    _nested: ClassVar[Mapping[str, type[_Model]]] = {
        "metadata": GenerationMetadata,
        "error": GenerationError,
    }

    id: str
    status: str = "processing"
    type: str | None = None
    provider: str | None = None
    service: str | None = None
    url: str | None = None
    poster_url: str | None = None
    progress: float | None = None
    stage: str | None = None
    queue_position: int | None = None
    credit_cost: int | None = None
    webhook_url: str | None = None
    prompt: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration: int | None = None
    metadata: GenerationMetadata | None = None
    error: GenerationError | None = None

    @classmethod
    def _convert(cls, name: str, value: Any) -> Any:
        if name == "status" and isinstance(value, str):
            return value.lower()
        if name == "progress" and value is not None:
            return float(value)
        return value

    @property
    def done(self) -> bool:
        """True once the status is final: completed, failed or cancelled."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_response(cls, body: Mapping[str, Any]) -> Generation:
        """From a REST body (`{"data": {"imagevideo": …}}`) or a GraphQL one
        (`{"data": {"generate" | "animateImage" | "generation" | …: …}}`)."""
        return cls.from_dict(_unwrap(body, "imagevideo"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Account(_Model):
    """An account: plan, credit balance, limits, today's usage (API.md §4, §10)."""

    id: str
    name: str | None = None
    plan: str | None = None
    credit_balance: int = 0
    limits: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    usage: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    low_credit_threshold: int | None = None
    webhook_url: str | None = None

    @property
    def concurrency(self) -> int | None:
        """How many jobs the plan renders at once (None: unknown or unlimited)."""
        return _first_int(self.limits, "concurrentJobs", "concurrent")

    @classmethod
    def from_response(cls, body: Mapping[str, Any]) -> Account:
        return cls.from_dict(_unwrap(body, "account"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class LedgerEntry(_Model):
    """One change of the credit balance. `kind` is grant, topup, charge, refund or
    adjustment; a charge is negative."""

    id: str | int
    kind: str | None = None
    amount: int = 0
    note: str | None = None
    generation_id: str | None = None
    balance_after: int | None = None
    created_at: datetime | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeliveryAttempt(_Model):
    """One try at delivering a webhook: the receiver's status code or the error."""

    attempted_at: datetime | None = None
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Delivery(_Model):
    """A webhook delivery of a generation's event (its id is the `webhook-id` header),
    with every attempt, oldest first. `state` is pending, queued (a redelivery waiting to be
    sent), delivered, failed or disabled."""

    _nested: ClassVar[Mapping[str, type[_Model]]] = {"attempts": DeliveryAttempt}

    id: str
    event: str | None = None
    generation_id: str | None = None
    url: str | None = None
    state: str | None = None
    attempt_count: int | None = None
    next_attempt_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    delivered_at: datetime | None = None
    payload: Mapping[str, Any] | None = None
    attempts: tuple[DeliveryAttempt, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Upload(_Model):
    """An uploaded source image; pass `.uri` (`upload://upl_…`) as a generation's image."""

    id: str
    uri: str
    expires_at: datetime | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None

    @classmethod
    def from_response(cls, body: Mapping[str, Any]) -> Upload:
        return cls.from_dict(_unwrap(body, "upload"))


def _unwrap(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """The one object inside `{"data": {NAME: OBJECT}}`, preferring NAME == key."""
    data = body.get("data", body) if isinstance(body, Mapping) else None
    if not isinstance(data, Mapping):
        raise ValueError(f"unexpected response body: {body!r}")
    if isinstance(data.get(key), Mapping):
        return data[key]
    objects = [v for v in data.values() if isinstance(v, Mapping)]
    if len(objects) == 1:
        return objects[0]
    if "id" in data:
        return data
    raise ValueError(f"no {key!r} object in response: {body!r}")


def _first_int(mapping: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
