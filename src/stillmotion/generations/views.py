"""The generation object of API.md §3, built from a row. Both transports return this."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from stillmotion.accounts.models import Account
from stillmotion.accounts.plans import limits_for
from stillmotion.generations.models import Generation
from stillmotion.storage import Storage

RUNNING_STAGES = ("rendering", "encoding", "storing")


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# Built once (a queued job's view is made on every create and on polls of queued jobs), and
# one statement for both counts:
# - busy: the account's running jobs and its older queued ones, counted up to its concurrency
#   limit (so the cost does not grow with the account's backlog); at the limit the job is
#   `throttled`;
# - ahead: queued jobs older than this one, of any account (`queuePosition` - 1).
_QUEUE_STATE = select(
    select(func.count())
    .select_from(
        select(Generation.id)
        .where(
            Generation.account_id == bindparam("account_id"),
            Generation.status == "processing",
            or_(
                Generation.stage.in_(RUNNING_STAGES),
                (Generation.stage == "queued") & (Generation.created_at < bindparam("created_at")),
            ),
        )
        .limit(bindparam("concurrent"))
        .subquery()
    )
    .scalar_subquery()
    .label("busy"),
    select(func.count())
    .where(
        Generation.status == "processing",
        Generation.stage == "queued",
        Generation.created_at < bindparam("created_at"),
    )
    .scalar_subquery()
    .label("ahead"),
)


def queue_state(
    *, session: Session, gen: Generation, concurrent: int | None = None
) -> tuple[str, int | None]:
    """The public `stage` and `queuePosition` (1-based among all queued jobs, None once
    started). `concurrent`: the account's concurrency limit when the caller has it (else the
    account is read)."""
    if gen.status != "processing" or gen.stage != "queued":
        return gen.stage, None
    if concurrent is None:
        account = session.get(Account, gen.account_id)
        concurrent = limits_for(account).concurrent if account is not None else 1
    params = {"account_id": gen.account_id, "created_at": gen.created_at, "concurrent": concurrent}
    busy, ahead = session.connection().execute(_QUEUE_STATE, params).one()
    return ("throttled" if busy >= concurrent else "queued"), ahead + 1


def to_api(
    gen: Generation, *, session: Session, storage: Storage, concurrent: int | None = None
) -> dict[str, Any]:
    """The §3 object. `gen` is the row (an ORM object, or anything with its attributes);
    `session` is needed only for a queued job (its stage and queue position are counts)."""
    completed = gen.status == "completed"
    stage, position = queue_state(session=session, gen=gen, concurrent=concurrent)
    return {
        "id": gen.id,
        "status": gen.status,
        "type": "VIDEO",
        "provider": gen.service,
        "service": gen.service,
        "url": storage.url(gen.output_key) if completed and gen.output_key else None,
        "posterUrl": storage.url(gen.poster_key) if completed and gen.poster_key else None,
        "progress": round(gen.progress, 4),
        "stage": stage,
        "queuePosition": position,
        "creditCost": gen.credit_cost,
        "webhookUrl": gen.webhook_url,
        "prompt": gen.prompt,
        "createdAt": iso(gen.created_at),
        "startedAt": iso(gen.started_at),
        "completedAt": iso(gen.completed_at),
        "duration": gen.duration,
        "metadata": {
            "duration": gen.duration,
            "width": gen.width,
            "height": gen.height,
            "fps": gen.fps,
            "frames": gen.frames if gen.frames is not None else gen.duration * gen.fps,
            "version": gen.version,
            "aspectRatio": gen.aspect_ratio,
            "motionIntensity": gen.motion_intensity,
            "seed": gen.seed,
            "bytes": gen.output_bytes,
        },
        "error": {"code": gen.error_code, "message": gen.error_message}
        if gen.status == "failed"
        else None,
    }
