"""The one error tree of the service. Both transports map it to the API.md §6 body in one place.

    StillmotionError
    ├── BadRequest (400 BAD_REQUEST)
    │   ├── ValidationFailed (400 VALIDATION_ERROR, with `field`)
    │   ├── InvalidImage (400 INVALID_IMAGE)
    │   ├── ImageFetchFailed (400 IMAGE_FETCH_FAILED)
    │   └── UrlNotAllowed (400 URL_NOT_ALLOWED)
    ├── Unauthenticated (401)
    ├── InsufficientCredits (402, with creditsRequired / creditsAvailable)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── Conflict (409): IdempotencyInProgress, AlreadyFinished
    ├── PayloadTooLarge (413)
    ├── IdempotencyKeyReused (422)
    ├── RateLimited (429, with retryAfter): DailyLimitExceeded
    └── InternalError (500)

Each class's docstring is its default message.
"""

from __future__ import annotations

from typing import Any


class StillmotionError(Exception):
    """Something went wrong."""

    status: int = 500
    code: str = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str | None = None, **extensions: Any) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.extensions = {k: v for k, v in extensions.items() if v is not None}
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        """The API.md §6 error body."""
        return {"errors": [self.as_graphql_error()]}

    def as_graphql_error(self) -> dict[str, Any]:
        return {"message": self.message, "extensions": {"code": self.code, **self.extensions}}


class BadRequest(StillmotionError):
    """The request is malformed."""

    status, code = 400, "BAD_REQUEST"


class ValidationFailed(BadRequest):
    """A field has an invalid value."""

    code = "VALIDATION_ERROR"

    def __init__(self, message: str | None = None, *, field: str | None = None, **ext: Any):
        super().__init__(message, field=field, **ext)


class InvalidImage(BadRequest):
    """The image is not a usable JPEG, PNG or WebP."""

    code = "INVALID_IMAGE"


class ImageFetchFailed(BadRequest):
    """The image could not be fetched."""

    code = "IMAGE_FETCH_FAILED"


class UrlNotAllowed(BadRequest):
    """The URL points to an address this server may not reach."""

    code = "URL_NOT_ALLOWED"


class Unauthenticated(StillmotionError):
    """A valid API key is required (Authorization: Bearer KEY or X-API-Key: KEY)."""

    status, code = 401, "UNAUTHENTICATED"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="stillmotion"'}


class InsufficientCredits(StillmotionError):
    """Insufficient credits for this operation."""

    status, code = 402, "INSUFFICIENT_CREDITS"

    def __init__(self, *, required: int, available: int, message: str | None = None):
        super().__init__(message, creditsRequired=required, creditsAvailable=available)


class Forbidden(StillmotionError):
    """This operation needs an admin key."""

    status, code = 403, "FORBIDDEN"


class NotFound(StillmotionError):
    """No such resource."""

    status, code = 404, "NOT_FOUND"


class Conflict(StillmotionError):
    """The resource is in a state that does not allow this."""

    status, code = 409, "CONFLICT"


class IdempotencyInProgress(Conflict):
    """A request with this Idempotency-Key is still being handled; retry shortly."""

    code = "IDEMPOTENCY_IN_PROGRESS"


class AlreadyFinished(Conflict):
    """The generation has already finished."""

    code = "ALREADY_FINISHED"


class PayloadTooLarge(StillmotionError):
    """The request body or image is over the limits."""

    status, code = 413, "PAYLOAD_TOO_LARGE"


class IdempotencyKeyReused(StillmotionError):
    """This Idempotency-Key was used with a different request."""

    status, code = 422, "IDEMPOTENCY_KEY_REUSED"


class RateLimited(StillmotionError):
    """Rate limit exceeded."""

    status, code = 429, "RATE_LIMITED"

    def __init__(self, message: str | None = None, *, retry_after: int, **ext: Any):
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, retryAfter=self.retry_after, **ext)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class DailyLimitExceeded(RateLimited):
    """Daily generation limit reached; it resets at 00:00 UTC."""

    code = "DAILY_LIMIT_EXCEEDED"


class InternalError(StillmotionError):
    """Internal server error, please retry."""
