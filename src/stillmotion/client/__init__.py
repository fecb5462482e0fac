"""The stillmotion Python SDK. Imports nothing but httpx and the standard library.

    from stillmotion.client import Client

    with Client(base_url="http://localhost:8000", api_key="sm_…") as client:
        gen = client.generate(image="photo.jpg", prompt="slow push in", duration=5)
        client.download(client.wait(gen), "clip.mp4")

`stillmotion.client.webhooks` verifies the signatures of the webhooks the server sends.
"""

from __future__ import annotations

from stillmotion.client import webhooks
from stillmotion.client._client import AsyncClient, Client, GenerationOptions
from stillmotion.client._ops import BatchResult, Skipped, estimate_cost
from stillmotion.client.errors import (
    AlreadyFinished,
    BadRequest,
    Conflict,
    DailyLimitExceeded,
    Forbidden,
    GenerationCancelled,
    GenerationFailed,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    ImageFetchFailed,
    InsufficientCredits,
    InvalidImage,
    MethodNotAllowed,
    NetworkError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    ServerBusy,
    ServerError,
    ServiceUnavailable,
    StillmotionError,
    StorageFull,
    Unauthenticated,
    UrlNotAllowed,
    ValidationError,
    WaitTimeout,
)
from stillmotion.client.models import (
    Account,
    Delivery,
    DeliveryAttempt,
    Generation,
    GenerationError,
    GenerationMetadata,
    LedgerEntry,
    Upload,
)

__all__ = [
    "Account",
    "AlreadyFinished",
    "AsyncClient",
    "BadRequest",
    "BatchResult",
    "Client",
    "Conflict",
    "DailyLimitExceeded",
    "Delivery",
    "DeliveryAttempt",
    "Forbidden",
    "Generation",
    "GenerationCancelled",
    "GenerationError",
    "GenerationFailed",
    "GenerationMetadata",
    "GenerationOptions",
    "IdempotencyInProgress",
    "IdempotencyKeyReused",
    "ImageFetchFailed",
    "InsufficientCredits",
    "InvalidImage",
    "LedgerEntry",
    "MethodNotAllowed",
    "NetworkError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "ServerBusy",
    "ServerError",
    "ServiceUnavailable",
    "Skipped",
    "StillmotionError",
    "StorageFull",
    "Unauthenticated",
    "Upload",
    "UrlNotAllowed",
    "ValidationError",
    "WaitTimeout",
    "estimate_cost",
    "webhooks",
]
