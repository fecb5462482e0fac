"""The server's one way to show a time and its one UTC day boundary."""

from __future__ import annotations

from datetime import UTC, datetime, time


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and `Z` (`2024-05-01T12:00:00.000Z`); None stays None."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def start_of_utc_day(now: datetime | None = None) -> datetime:
    """Midnight UTC of `now`'s day (today's by default): where daily caps and usage start."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return datetime.combine(now.date(), time(0), tzinfo=UTC)
