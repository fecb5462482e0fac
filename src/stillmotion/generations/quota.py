"""Every per-account count of jobs, in one place: what "running", "waiting" and "today" mean.

- **running**: unfinished, in a running stage, under a lease that has not run out. A job whose
  worker died keeps its `rendering` stage in the row until it is claimed again, but it is not
  running: it is waiting, and shows as `queued` (or `throttled`) with its queue position.
- **waiting** (claimable): queued, or in a running stage with an expired lease.
- **today**: created since midnight UTC (`times.start_of_utc_day`).

`jobs.queue.claim` (the concurrency limit), the generation view (`stage`, `queuePosition`),
the account's `usage` and the daily cap (`accounts.limits`) all count through here, so they
cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, func, or_, select
from sqlalchemy.orm import Session

from stillmotion import errors
from stillmotion.accounts.models import Account
from stillmotion.accounts.plans import Limits, limits_for
from stillmotion.db import utcnow
from stillmotion.generations.models import Generation
from stillmotion.generations.states import RUNNING_STAGES, Stage, Status
from stillmotion.times import start_of_utc_day

_G = Generation.__table__.c


def running(now: Any) -> ColumnElement[bool]:
    """Jobs a worker holds right now (`now`: a datetime or a bind parameter)."""
    return (
        (_G.status == Status.PROCESSING)
        & _G.stage.in_(RUNNING_STAGES)
        & (_G.lease_expires_at >= now)
    )


def waiting(now: Any) -> ColumnElement[bool]:
    """Jobs a worker may claim: queued, or abandoned by a worker whose lease ran out."""
    return (_G.status == Status.PROCESSING) & (
        (_G.stage == Stage.QUEUED) | (_G.stage.in_(RUNNING_STAGES) & (_G.lease_expires_at < now))
    )


def is_running(gen: Any, now: datetime | None = None) -> bool:
    """`running`, for a row in hand."""
    return (
        gen.status == Status.PROCESSING
        and gen.stage in RUNNING_STAGES
        and gen.lease_expires_at is not None
        and gen.lease_expires_at >= (now or utcnow())
    )


def is_waiting(gen: Any, now: datetime | None = None) -> bool:
    """`waiting`, for a row in hand."""
    return gen.status == Status.PROCESSING and not is_running(gen, now)


_RUNNING_COUNT = select(func.count()).where(
    _G.account_id == bindparam("account_id"), running(bindparam("now"))
)
_TODAY_COUNT = select(func.count()).where(
    _G.account_id == bindparam("account_id"), _G.created_at >= bindparam("since")
)


def running_jobs(conn: Connection, *, account_id: str, now: datetime | None = None) -> int:
    """The account's running jobs (what its concurrency limit bounds)."""
    return conn.execute(_RUNNING_COUNT, {"account_id": account_id, "now": now or utcnow()}).scalar()


def jobs_today(conn: Connection, *, account_id: str, now: datetime | None = None) -> int:
    """The account's jobs created since midnight UTC (what its daily cap bounds)."""
    return conn.execute(
        _TODAY_COUNT, {"account_id": account_id, "since": start_of_utc_day(now)}
    ).scalar()


@dataclass(frozen=True)
class Usage:
    generations_today: int
    running_jobs: int


def usage(session: Session, *, account_id: str) -> Usage:
    """What `account.usage` shows."""
    conn, now = session.connection(), utcnow()
    return Usage(
        generations_today=jobs_today(conn, account_id=account_id, now=now),
        running_jobs=running_jobs(conn, account_id=account_id, now=now),
    )


# Built once (a waiting job's view is made on every create and on polls of queued jobs), and
# one statement for both counts:
# - busy: the account's running jobs and its waiting ones older than this one, counted up to
#   its concurrency limit (so the cost does not grow with the account's backlog); at the
#   limit the job is `throttled`;
# - ahead: waiting jobs older than this one, of any account (`queuePosition` - 1).
_NOW, _CREATED = bindparam("now"), bindparam("created_at")
_QUEUE_STATE = select(
    select(func.count())
    .select_from(
        select(_G.id)
        .where(
            _G.account_id == bindparam("account_id"),
            or_(running(_NOW), waiting(_NOW) & (_G.created_at < _CREATED)),
        )
        .limit(bindparam("concurrent"))
        .subquery()
    )
    .scalar_subquery()
    .label("busy"),
    select(func.count())
    .where(waiting(_NOW), _G.created_at < _CREATED)
    .scalar_subquery()
    .label("ahead"),
)


def queue_state(conn: Connection, *, gen: Any, concurrent: int) -> tuple[str, int | None]:
    """The public `stage` and `queuePosition` (1-based among all waiting jobs; None for a job
    that is running or finished). `gen` is the row; `concurrent`, its account's limit."""
    now = utcnow()
    if not is_waiting(gen, now):
        return gen.stage, None
    params = {
        "account_id": gen.account_id,
        "created_at": gen.created_at,
        "concurrent": concurrent,
        "now": now,
    }
    busy, ahead = conn.execute(_QUEUE_STATE, params).one()
    return (Stage.THROTTLED if busy >= concurrent else Stage.QUEUED).value, ahead + 1


# The account's row, locked (PostgreSQL; SQLite's write transaction is already exclusive).
_LOCK_ACCOUNT = (
    select(Account.plan, Account.limit_per_minute, Account.limit_concurrent, Account.limit_daily)
    .where(Account.id == bindparam("account_id"))
    .with_for_update()
)


def check_daily(session: Session, *, account_id: str) -> Limits:
    """Refuse a create over the account's daily cap (`DailyLimitExceeded`), or return the
    account's limits. Call it in the transaction that creates the generation: it locks the
    account row first, so concurrent creates count each other."""
    conn = session.connection()
    account = conn.execute(_LOCK_ACCOUNT, {"account_id": account_id}).first()
    if account is None:
        raise errors.NotFound("no such account")
    plan = limits_for(account)
    if plan.daily is None:
        return plan
    now = utcnow()
    if jobs_today(conn, account_id=account_id, now=now) >= plan.daily:
        reset = start_of_utc_day(now) + timedelta(days=1)
        raise errors.DailyLimitExceeded(
            f"Daily limit of {plan.daily} generations reached; it resets at 00:00 UTC",
            retry_after=math.ceil((reset - datetime.now(UTC)).total_seconds()),
            limit=plan.daily,
        )
    return plan
