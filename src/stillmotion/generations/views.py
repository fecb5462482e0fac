"""The generation object of API.md §3, built from a row. Both transports return this."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from stillmotion.accounts.models import Account
from stillmotion.accounts.plans import limits_for
from stillmotion.generations import quota
from stillmotion.generations.models import Generation
from stillmotion.generations.states import Status
from stillmotion.storage import Storage
from stillmotion.times import iso


def queue_state(
    *, session: Session | None, gen: Any, concurrent: int | None = None
) -> tuple[str, int | None]:
    """The public `stage` and `queuePosition` (`quota.queue_state`). `concurrent`: the
    account's concurrency limit when the caller has it (else the account is read)."""
    if not quota.is_waiting(gen):
        return gen.stage, None
    if concurrent is None:
        account = session.get(Account, gen.account_id)
        concurrent = limits_for(account).concurrent if account is not None else 1
    return quota.queue_state(session.connection(), gen=gen, concurrent=concurrent)


def to_api(
    gen: Generation, *, session: Session | None, storage: Storage, concurrent: int | None = None
) -> dict[str, Any]:
    """The §3 object. `gen` is the row (an ORM object, or anything with its attributes);
    `session` is needed only for a waiting job (its stage and queue position are counts:
    `quota.is_waiting` tells)."""
    completed = gen.status == Status.COMPLETED
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
        if gen.status == Status.FAILED
        else None,
    }
