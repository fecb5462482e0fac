"""Typed exceptions of the SDK, one per API.md §6 code, plus the outcomes of `wait`.

StillmotionError (status, code, message, extensions)
├── BadRequest (400 BAD_REQUEST)
│   ├── ValidationError (400 VALIDATION_ERROR, `.field`)
│   ├── InvalidImage (400 INVALID_IMAGE)
│   ├── ImageFetchFailed (400 IMAGE_FETCH_FAILED)
│   └── UrlNotAllowed (400 URL_NOT_ALLOWED)
├── Unauthenticated (401)
├── InsufficientCredits (402, `.required`, `.available`)
├── Forbidden (403)
├── NotFound (404)
├── Conflict (409): IdempotencyInProgress, AlreadyFinished
├── PayloadTooLarge (413)
├── IdempotencyKeyReused (422)
├── RateLimited (429, `.retry_after`): DailyLimitExceeded
├── ServerError (5xx, INTERNAL_SERVER_ERROR)
├── NetworkError (no answer: the connection failed, after the retry budget)
├── GenerationFailed (the job ended `failed`; `.code`, `.generation`)
├── GenerationCancelled (the job ended `cancelled`; `.generation`)
└── WaitTimeout (`wait` gave up; `.generation_id` so nothing paid for is lost)
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stillmotion.client.models import Generation


class StillmotionError(Exception):
    """Root of everything the SDK raises.

    `status` is the HTTP status (None when no HTTP answer is involved), `code` the API.md §6
    code, `extensions` the error's `extensions` object as the server sent it.
    """

    default_code = "ERROR"

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        extensions: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        self.status = status
        self.code = code or self.default_code
        self.extensions = dict(extensions or {})
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def __str__(self) -> str:
        head = f"{self.code}" if self.status is None else f"{self.status} {self.code}"
        return f"{head}: {self.message}"


class BadRequest(StillmotionError):
    """The request is malformed."""

    default_code = "BAD_REQUEST"


class ValidationError(BadRequest):
    """A field has an invalid value."""

    default_code = "VALIDATION_ERROR"

    @property
    def field(self) -> str | None:
        return self.extensions.get("field")


class InvalidImage(BadRequest):
    """The image is not a usable JPEG, PNG or WebP."""

    default_code = "INVALID_IMAGE"


class ImageFetchFailed(BadRequest):
    """The server could not fetch the image."""

    default_code = "IMAGE_FETCH_FAILED"


class UrlNotAllowed(BadRequest):
    """The URL points to an address the server may not reach."""

    default_code = "URL_NOT_ALLOWED"


class Unauthenticated(StillmotionError):
    """A valid API key is required."""

    default_code = "UNAUTHENTICATED"


class InsufficientCredits(StillmotionError):
    """Insufficient credits for this operation."""

    default_code = "INSUFFICIENT_CREDITS"

    @property
    def required(self) -> int | None:
        return self.extensions.get("creditsRequired")

    @property
    def available(self) -> int | None:
        return self.extensions.get("creditsAvailable")


class Forbidden(StillmotionError):
    """This operation needs an admin key."""

    default_code = "FORBIDDEN"


class NotFound(StillmotionError):
    """No such resource."""

    default_code = "NOT_FOUND"


class Conflict(StillmotionError):
    """The resource is in a state that does not allow this."""

    default_code = "CONFLICT"


class IdempotencyInProgress(Conflict):
    """A request with this Idempotency-Key is still being handled."""

    default_code = "IDEMPOTENCY_IN_PROGRESS"


class AlreadyFinished(Conflict):
    """The generation has already finished."""

    default_code = "ALREADY_FINISHED"


class MethodNotAllowed(StillmotionError):
    """The path does not take this HTTP method (the `Allow` header lists those it takes)."""

    default_code = "METHOD_NOT_ALLOWED"


class RequestTimeout(StillmotionError):
    """The request did not arrive in time; it may be sent again."""

    default_code = "REQUEST_TIMEOUT"


class PayloadTooLarge(StillmotionError):
    """The request body or image is over the limits."""

    default_code = "PAYLOAD_TOO_LARGE"


class IdempotencyKeyReused(StillmotionError):
    """This Idempotency-Key was used with a different request."""

    default_code = "IDEMPOTENCY_KEY_REUSED"


class RateLimited(StillmotionError):
    """Rate limit exceeded."""

    default_code = "RATE_LIMITED"

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait, the larger of the `Retry-After` header and `retryAfter`."""
        values = [parse_retry_after(self.headers.get("retry-after"))]
        ext = self.extensions.get("retryAfter")
        if isinstance(ext, int | float):
            values.append(float(ext))
        found = [v for v in values if v is not None]
        return max(found) if found else None


class DailyLimitExceeded(RateLimited):
    """Daily generation limit reached; it resets at 00:00 UTC."""

    default_code = "DAILY_LIMIT_EXCEEDED"


class ServerError(StillmotionError):
    """The server failed; the request may be retried."""

    default_code = "INTERNAL_SERVER_ERROR"


class ServiceUnavailable(ServerError):
    """The server cannot take the request now (503); retry after `retry_after` seconds."""

    default_code = "SERVICE_UNAVAILABLE"

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait, the larger of the `Retry-After` header and `retryAfter`."""
        return RateLimited.retry_after.fget(self)


class StorageFull(ServiceUnavailable):
    """The server's storage is full; nothing was stored or charged."""

    default_code = "STORAGE_FULL"


class ServerBusy(ServiceUnavailable):
    """The server has as many connections open as it allows."""

    default_code = "SERVER_BUSY"


class NetworkError(StillmotionError):
    """No answer from the server (connection refused, reset or timed out)."""

    default_code = "NETWORK_ERROR"


class GenerationFailed(StillmotionError):
    """The generation failed; its credits were refunded."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        err = generation.error
        super().__init__(
            err.message if err else "",
            code=err.code if err else "FAILED",
        )


class GenerationCancelled(StillmotionError):
    """The generation was cancelled; its credits were refunded."""

    default_code = "CANCELLED"

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        super().__init__(f"generation {generation.id} was cancelled")


class WaitTimeout(StillmotionError):
    """The generation did not finish in time; it is still running on the server."""

    default_code = "WAIT_TIMEOUT"

    def __init__(self, generation_id: str, *, generation: Generation | None = None) -> None:
        self.generation_id = generation_id
        self.generation = generation
        super().__init__(
            f"generation {generation_id} did not finish in time; it keeps running, "
            f"poll it again with get({generation_id!r})"
        )


_BY_CODE: dict[str, type[StillmotionError]] = {
    cls.default_code: cls
    for cls in (
        BadRequest,
        ValidationError,
        InvalidImage,
        ImageFetchFailed,
        UrlNotAllowed,
        Unauthenticated,
        InsufficientCredits,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        RequestTimeout,
        Conflict,
        IdempotencyInProgress,
        AlreadyFinished,
        PayloadTooLarge,
        IdempotencyKeyReused,
        RateLimited,
        DailyLimitExceeded,
        ServerError,
        ServiceUnavailable,
        StorageFull,
        ServerBusy,
    )
}

_BY_STATUS: dict[int, type[StillmotionError]] = {
    400: BadRequest,
    401: Unauthenticated,
    402: InsufficientCredits,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    422: IdempotencyKeyReused,
    429: RateLimited,
}


def error_from_body(
    body: Any, *, status: int | None = None, headers: Mapping[str, str] | None = None
) -> StillmotionError:
    """The typed exception for an API.md §6 body (REST, or GraphQL `errors`).

    The code decides the class; an unknown code falls back on the HTTP status.
    """
    first: Mapping[str, Any] = {}
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            first = errors[0]
        elif isinstance(body.get("detail"), str):
            first = {"message": body["detail"]}
    extensions = first.get("extensions") if isinstance(first.get("extensions"), Mapping) else {}
    code = extensions.get("code") if isinstance(extensions.get("code"), str) else None
    cls = _BY_CODE.get(code or "")
    if cls is None:
        if status == 503:
            cls = ServiceUnavailable
        elif status is not None and status >= 500:
            cls = ServerError
        else:
            cls = _BY_STATUS.get(status or 0, StillmotionError)
    message = first.get("message") if isinstance(first.get("message"), str) else ""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return cls(message, status=status, code=code, extensions=extensions, headers=lowered)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` value: delay-seconds or an HTTP date; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
