"""When to retry, how long to sleep, and how fast polling may go. Pure code: no I/O, no clock."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from stillmotion.client.errors import (
    IdempotencyInProgress,
    NetworkError,
    RateLimited,
    ServerError,
    StillmotionError,
)

RETRYABLE = (NetworkError, IdempotencyInProgress, RateLimited, ServerError)


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, floored by the server's `Retry-After`.

    A logical call may retry up to `max_retries` times and sleep at most `max_retry_wait`
    seconds in all. A `Retry-After` longer than what is left of that budget ends the retries
    at once (the SDK never sleeps less than the server asked).
    """

    max_retries: int = 5
    max_retry_wait: float = 60.0
    base: float = 0.5
    cap: float = 20.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, *, attempt: int, error: StillmotionError, waited: float) -> float | None:
        """Seconds to sleep before retry number `attempt + 1`, or None to give up.

        `attempt` counts the retries already made, `waited` the seconds already slept.
        """
        if not isinstance(error, RETRYABLE) or attempt >= self.max_retries:
            return None
        left = self.max_retry_wait - waited
        floor = error.retry_after if isinstance(error, RateLimited) else None
        jitter = self.rng.uniform(0.0, min(self.cap, self.base * 2**attempt))
        if floor is not None:
            return floor if floor <= left else None
        if left <= 0:
            return None
        return min(jitter, left)


_NUM = r"(-?\d+(?:\.\d+)?)"


@dataclass
class ReadPacer:
    """Spaces polls so the read budget the server announces lasts until its window resets.

    Fed the headers of every poll: `X-RateLimit-Remaining` / `X-RateLimit-Reset` (epoch
    seconds, API.md §8) or the IETF `RateLimit` field (`remaining=…, reset=…` or
    `r=…;t=…`, reset in seconds from now).
    """

    remaining: int | None = None
    reset_at: float | None = None

    def update(self, headers: Mapping[str, str], *, now: float) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        remaining = _int(lowered.get("x-ratelimit-remaining"))
        reset = _float(lowered.get("x-ratelimit-reset"))
        reset_at = None
        if reset is not None:
            # Epoch seconds per API.md; a small number can only be a delta.
            reset_at = reset if reset > 1e9 else now + reset
        ietf = lowered.get("ratelimit")
        if ietf and (remaining is None or reset_at is None):
            r = re.search(r"(?:remaining=|\br=)" + _NUM, ietf)
            t = re.search(r"(?:reset=|\bt=)" + _NUM, ietf)
            if remaining is None and r:
                remaining = int(float(r.group(1)))
            if reset_at is None and t:
                reset_at = now + float(t.group(1))
        if remaining is not None:
            self.remaining = max(0, remaining)
            self.reset_at = reset_at

    def min_interval(self, *, now: float) -> float:
        """The shortest wait before the next poll that keeps within the announced budget."""
        if self.remaining is None or self.reset_at is None:
            return 0.0
        window = self.reset_at - now
        if window <= 0:
            return 0.0
        if self.remaining <= 0:
            return window
        return window / self.remaining


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
