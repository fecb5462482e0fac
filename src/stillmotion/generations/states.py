"""A job's states, named once (like procrastinate's `Status`): the row's `status` and `stage`.

`StrEnum` members are the strings stored in the database and shown in the API, so they compare
and bind as those strings.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """API.md §3 `status`: every unfinished job is `processing` (the seed's polling loop)."""

    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class Stage(StrEnum):
    """Where an unfinished job is. `throttled` is never stored: it is a queued job whose
    account already runs its concurrency limit (`generations/quota.py` computes it)."""

    QUEUED = "queued"
    THROTTLED = "throttled"
    RENDERING = "rendering"
    # A remote provider's job (`providers/runway.py`): waiting in the upstream's queue, held
    # by the upstream's own concurrency limit, and fetching the finished output.
    QUEUED_UPSTREAM = "queued_upstream"
    THROTTLED_UPSTREAM = "throttled_upstream"
    DOWNLOADING = "downloading"
    ENCODING = "encoding"
    STORING = "storing"
    DONE = "done"


# Stages of a job a worker holds (under a lease that it renews).
RUNNING_STAGES = (
    Stage.RENDERING,
    Stage.QUEUED_UPSTREAM,
    Stage.THROTTLED_UPSTREAM,
    Stage.DOWNLOADING,
    Stage.ENCODING,
    Stage.STORING,
)
