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
    ├── MethodNotAllowed (405, with the Allow header)
    ├── RequestTimeout (408): no complete request headers in time (written by `server`)
    ├── Conflict (409): IdempotencyInProgress, AlreadyFinished
    ├── PayloadTooLarge (413)
    ├── IdempotencyKeyReused (422)
    ├── RateLimited (429, with retryAfter): DailyLimitExceeded
    ├── InternalError (500)
    └── Unavailable (503, with retryAfter): StorageFull, ServerBusy

Each class's docstring is its default message. User input quoted into a message goes through
`quote` (bounded and escaped), and every message is capped at `MAX_MESSAGE` as the last guard;
`check_text` refuses a string that no database can bind (a lone surrogate).
"""

from __future__ import annotations

from typing import Any

QUOTE_CHARS = 64
"""How much of a client's value an error message quotes back."""
MAX_MESSAGE = 1000
"""No error message is longer than this (characters)."""


def quote(value: object, *, limit: int = QUOTE_CHARS) -> str:
    """`value` as an error message may quote it: `repr`-escaped (no newline, escape or other
    control character reaches a body or a log line) and cut to `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"… ({len(text)} characters)"


def check_text(value: str, *, field: str) -> str:
    """`value`, or `ValidationFailed` when it is not valid Unicode text (a lone surrogate, which
    JSON's `\\udfff` escape can carry but neither UTF-8 nor a database bind can)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationFailed(
                f"{field}: not valid Unicode text (it holds a lone surrogate)", field=field
            ) from None
    return value


class StillmotionError(Exception):
    """Something went wrong."""

    status: int = 500
    code: str = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str | None = None, **extensions: Any) -> None:
        self.message = message or (self.__doc__ or "").strip()
        if len(self.message) > MAX_MESSAGE:
            self.message = self.message[: MAX_MESSAGE - 1] + "…"
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

    def __init__(self, message: str | None = None, *, field: str | None = None, **ext: Any):
        super().__init__(message, field=field, **ext)

    def about(self, field: str, *, hint: str = "") -> UrlNotAllowed:
        """The same refusal, naming the request field that held the URL (and a way out)."""
        return UrlNotAllowed(f"{field}: {self.message}{hint}", field=field)


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
        message = message or (
            f"Insufficient credits: {required} credits needed, {available} available."
        )
        super().__init__(message, creditsRequired=required, creditsAvailable=available)


class Forbidden(StillmotionError):
    """This operation needs an admin key."""

    status, code = 403, "FORBIDDEN"


class NotFound(StillmotionError):
    """No such resource."""

    status, code = 404, "NOT_FOUND"


class MethodNotAllowed(StillmotionError):
    """This method is not allowed here; the Allow header lists those that are."""

    status, code = 405, "METHOD_NOT_ALLOWED"

    def __init__(self, message: str | None = None, *, allow: str = "") -> None:
        self.allow = allow
        super().__init__(message)

    @property
    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow} if self.allow else {}


class RequestTimeout(StillmotionError):
    """The request headers did not arrive in time."""

    status, code = 408, "REQUEST_TIMEOUT"


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


class Unavailable(StillmotionError):
    """The server cannot take this request now; retry after the given seconds."""

    status, code = 503, "SERVICE_UNAVAILABLE"

    def __init__(self, message: str | None = None, *, retry_after: int = 30, **ext: Any):
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, retryAfter=self.retry_after, **ext)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class StorageFull(Unavailable):
    """The server's storage is full; nothing was stored or charged. Retry later."""

    code = "STORAGE_FULL"


class ServerBusy(Unavailable):
    """The server has as many connections open as it allows; retry shortly."""

    code = "SERVER_BUSY"
