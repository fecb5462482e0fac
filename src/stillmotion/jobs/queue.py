"""The generations table as a queue: claim with a lease, renew, complete, re-claim when a lease
runs out. The pattern of solid_queue, GoodJob, Oban and River.

- `claim` takes the oldest claimable job whose account is under its concurrency limit:
  `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, a `BEGIN IMMEDIATE` transaction on SQLite.
  A job is claimable when it is queued, or when it was running and its lease has expired (its
  worker died): then it is claimed again, up to `max_attempts`, after which it fails with a
  refund.
- `renew` extends the lease and records progress; it answers False when the job is no longer
  this worker's (cancelled, or re-claimed after this worker stalled), which the worker treats
  as "stop rendering".
- `checkpoint` writes a provider's state on the job (Runway: the upstream task's id) while
  this worker holds it, so the next attempt resumes that work; `retry` ends an attempt the
  provider says another may finish (back to the queue, the attempt counted; failed and
  refunded when no attempt is left).
- `complete` moves a rendered job to `completed` with one conditional UPDATE (only while this
  worker holds it), so exactly one of a racing cancel and completion wins, and writes the
  webhook event in the same transaction. Failing or cancelling (with the refund) is
  `generations.lifecycle.fail_or_cancel`, shared with the API's cancel.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from stillmotion.accounts.models import Account
from stillmotion.accounts.plans import limits_for
from stillmotion.db import utcnow
from stillmotion.generations import events, lifecycle, quota
from stillmotion.generations.models import Generation
from stillmotion.generations.states import Stage, Status
from stillmotion.storage import Storage


def claim(
    *, session: Session, storage: Storage, owner: str, lease_seconds: float, max_attempts: int
) -> Generation | None:
    """Claim the next job for `owner`, or None when nothing can start now.

    Accounts are considered in the order of their oldest claimable job. For each, the account
    row is locked first (`SKIP LOCKED`: another worker is deciding for it), then its oldest job
    is taken if the account is under its concurrency limit, so jobs start in submission order
    within an account, and an account at its limit never blocks the accounts behind it. Only
    one job row is locked, and no lock is waited for, so concurrent claims cannot deadlock.
    """
    now = utcnow()
    claimable = quota.waiting(now)
    passed: set[str] = set()
    while True:
        head = select(Generation.account_id).where(claimable)
        if passed:
            head = head.where(Generation.account_id.not_in(passed))
        account_id = session.scalar(head.order_by(Generation.created_at, Generation.id).limit(1))
        if account_id is None:
            return None
        passed.add(account_id)
        account = session.scalar(
            select(Account).where(Account.id == account_id).with_for_update(skip_locked=True)
        )
        if account is None:
            continue  # another worker holds this account's claim right now
        gen = _oldest(session, claimable, account_id)
        while gen is not None and gen.attempts >= max_attempts:
            lifecycle.fail_or_cancel(
                session=session,
                storage=storage,
                generation_id=gen.id,
                status=Status.FAILED,
                owner=None,
                error_code="RENDER_FAILED",
                error_message=f"the job was abandoned by its worker {gen.attempts} times",
            )
            gen = _oldest(session, claimable, account_id)
        if gen is None:
            continue
        # `gen` is waiting, so it is not among the running ones counted.
        running = quota.running_jobs(session.connection(), account_id=account_id, now=now)
        if running >= limits_for(account).concurrent:
            continue
        gen.stage = Stage.RENDERING
        gen.attempts += 1
        gen.lease_owner = owner
        gen.lease_expires_at = now + timedelta(seconds=lease_seconds)
        gen.started_at = gen.started_at or now
        session.flush()
        return gen


def _oldest(session: Session, claimable, account_id: str) -> Generation | None:
    return session.scalar(
        select(Generation)
        .where(claimable, Generation.account_id == account_id)
        .order_by(Generation.created_at, Generation.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def _held(generation_id: str, owner: str):
    """An UPDATE of a job that `owner` still holds and that has not finished."""
    return update(Generation).where(
        Generation.id == generation_id,
        Generation.lease_owner == owner,
        Generation.status == Status.PROCESSING,
    )


def renew(
    *,
    session: Session,
    generation_id: str,
    owner: str,
    lease_seconds: float,
    progress: float,
    stage: str,
) -> bool:
    """Extend the lease and record progress. False: the job is no longer ours to render."""
    now = utcnow()
    result = session.execute(
        _held(generation_id, owner).values(
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            progress=func.max(Generation.progress, progress)
            if session.bind.dialect.name == "sqlite"
            else func.greatest(Generation.progress, progress),
            stage=stage,
        )
    )
    return result.rowcount == 1


def release(*, session: Session, generation_id: str, owner: str) -> bool:
    """Hand a job back to the queue (this worker is shutting down), not counting the attempt."""
    result = session.execute(
        _held(generation_id, owner).values(
            stage=Stage.QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            attempts=Generation.attempts - 1,
        )
    )
    return result.rowcount == 1


def checkpoint(*, session: Session, generation_id: str, owner: str, state: dict[str, Any]) -> bool:
    """Store a provider's state for the job. False: the job is no longer ours (nothing written,
    so a worker that lost the job cannot overwrite the state of the one that took it over)."""
    result = session.execute(_held(generation_id, owner).values(provider_state=state))
    return result.rowcount == 1


def retry(
    *,
    session: Session,
    storage: Storage,
    generation_id: str,
    owner: str,
    max_attempts: int,
    error_message: str,
) -> Literal["queued", "failed", "lost"]:
    """End this attempt and put the job back in the queue, the attempt counted (unlike
    `release`), while attempts are left: "queued". With none left, fail it with
    `PROVIDER_ERROR` and `error_message`, refunded: "failed". "lost": no longer ours."""
    result = session.execute(
        _held(generation_id, owner)
        .where(Generation.attempts < max_attempts)
        .values(stage=Stage.QUEUED, lease_owner=None, lease_expires_at=None)
    )
    if result.rowcount == 1:
        return "queued"
    failed = lifecycle.fail_or_cancel(
        session=session,
        storage=storage,
        generation_id=generation_id,
        status=Status.FAILED,
        owner=owner,
        error_code="PROVIDER_ERROR",
        error_message=error_message,
    )
    return "failed" if failed else "lost"


def complete(
    *,
    session: Session,
    storage: Storage,
    generation_id: str,
    owner: str,
    output_key: str,
    poster_key: str | None,
    frames: int,
    output_bytes: int,
    width: int,
    height: int,
) -> bool:
    """Mark a rendered job completed. False when it was cancelled (or lost) meanwhile."""
    now = utcnow()
    result = session.execute(
        _held(generation_id, owner).values(
            status=Status.COMPLETED,
            stage=Stage.DONE,
            progress=1.0,
            completed_at=now,
            output_key=output_key,
            poster_key=poster_key,
            frames=frames,
            output_bytes=output_bytes,
            width=width,
            height=height,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    if result.rowcount != 1:
        return False
    gen = session.get(Generation, generation_id)
    session.refresh(gen)
    events.generation_finished(session=session, gen=gen, storage=storage)
    return True
