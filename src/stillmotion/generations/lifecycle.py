"""A job's end when it did not complete: failed or cancelled, refunded once, its event sent.

Shared by the API's cancel (`service.cancel`) and the workers (`jobs.queue`, `jobs.worker`);
a completion is the queue's (`jobs.queue.complete`), since only a worker that holds the job
can complete it.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from stillmotion.credits import service as credits
from stillmotion.db import utcnow
from stillmotion.generations import events
from stillmotion.generations.models import Generation
from stillmotion.generations.states import Stage, Status
from stillmotion.storage import Storage


def fail_or_cancel(
    *,
    session: Session,
    storage: Storage,
    generation_id: str,
    status: str,
    owner: str | None,
    error_code: str | None,
    error_message: str | None,
) -> bool:
    """Move an unfinished job to `failed` or `cancelled` and refund it, once.

    With `owner`, only if that worker still holds the job. False when it had already finished.
    """
    assert status in (Status.FAILED, Status.CANCELLED)
    query = update(Generation).where(
        Generation.id == generation_id, Generation.status == Status.PROCESSING
    )
    if owner is not None:
        query = query.where(Generation.lease_owner == owner)
    now = utcnow()
    result = session.execute(
        query.values(
            status=status,
            stage=Stage.DONE,
            completed_at=now,
            error_code=error_code,
            error_message=error_message,
            lease_owner=None,
            lease_expires_at=None,
            cancel_requested=status == Status.CANCELLED,
        )
    )
    if result.rowcount != 1:
        return False
    gen = session.get(Generation, generation_id)
    session.refresh(gen)
    credits.refund(session=session, generation_id=generation_id, note=f"generation {status}")
    events.generation_finished(session=session, gen=gen, storage=storage)
    return True
