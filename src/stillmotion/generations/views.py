"""The generation object of API.md §3, built from a row. Both transports return this."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
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


def public_stage(*, session: Session, gen: Generation) -> str:
    """`throttled` for a queued job whose account is at its concurrency limit: its running
    jobs plus its older queued ones fill every slot. The count stops at the limit, so its cost
    does not grow with the account's backlog."""
    if gen.status != "processing" or gen.stage != "queued":
        return gen.stage
    account = session.get(Account, gen.account_id)
    if account is None:
        return gen.stage
    concurrent = limits_for(account).concurrent
    ahead = (
        select(Generation.id)
        .where(
            Generation.account_id == gen.account_id,
            Generation.status == "processing",
            or_(
                Generation.stage.in_(RUNNING_STAGES),
                (Generation.stage == "queued") & (Generation.created_at < gen.created_at),
            ),
        )
        .limit(concurrent)
        .subquery()
    )
    busy = session.scalar(select(func.count()).select_from(ahead))
    return "throttled" if busy >= concurrent else "queued"


def queue_position(*, session: Session, gen: Generation) -> int | None:
    """1-based place among all queued jobs, or None once the job has started."""
    if gen.status != "processing" or gen.stage != "queued":
        return None
    ahead = session.scalar(
        select(func.count()).where(
            Generation.status == "processing",
            Generation.stage == "queued",
            Generation.created_at < gen.created_at,
        )
    )
    return ahead + 1


def to_api(gen: Generation, *, session: Session, storage: Storage) -> dict[str, Any]:
    completed = gen.status == "completed"
    return {
        "id": gen.id,
        "status": gen.status,
        "type": "VIDEO",
        "provider": gen.service,
        "service": gen.service,
        "url": storage.url(gen.output_key) if completed and gen.output_key else None,
        "posterUrl": storage.url(gen.poster_key) if completed and gen.poster_key else None,
        "progress": round(gen.progress, 4),
        "stage": public_stage(session=session, gen=gen),
        "queuePosition": queue_position(session=session, gen=gen),
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
