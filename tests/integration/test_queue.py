"""The queue's claim rules on both databases, against the service functions directly."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from stillmotion.accounts import service as accounts
from stillmotion.credits import service as credits
from stillmotion.db import Database, new_id, utcnow
from stillmotion.generations.models import Generation
from stillmotion.jobs import queue
from stillmotion.migrations import upgrade
from stillmotion.storage import LocalStorage
from tests.support import rows


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'q.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database("q_" + uuid.uuid4().hex[:10])
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path / "media", public_url="http://test")


def _account(db, name: str, plan: str) -> str:
    with db.session(write=True) as session:
        account, _ = accounts.get_or_create_account(session=session, name=name, plan=plan)
        credits.grant(session=session, account_id=account.id, amount=10_000)
        return account.id


def _job(db, account_id: str, offset_ms: int) -> str:
    gen_id = new_id("gen")
    with db.session(write=True) as session:
        credits.charge(session=session, account_id=account_id, amount=4, generation_id=gen_id)
        session.add(
            rows.generation(
                account_id, id=gen_id, created_at=utcnow() + timedelta(milliseconds=offset_ms)
            )
        )
    return gen_id


def _claim(db, storage, owner="w", max_attempts=3):
    with db.session(write=True) as session:
        gen = queue.claim(
            session=session,
            storage=storage,
            owner=owner,
            lease_seconds=30,
            max_attempts=max_attempts,
        )
        return gen.id if gen else None


def test_a_busy_account_does_not_block_the_others(db, storage):
    busy = _account(db, "busy", "free")  # one job at a time
    idle = _account(db, "idle", "pro")
    backlog = [_job(db, busy, i) for i in range(25)]
    late = _job(db, idle, 1000)
    assert _claim(db, storage) == backlog[0]
    # busy is at its limit with 24 older jobs waiting: the idle account's job starts anyway
    assert _claim(db, storage) == late
    assert _claim(db, storage) is None


def test_jobs_start_in_submission_order_within_an_account(db, storage):
    acc = _account(db, "starter", "starter")  # three at a time
    jobs = [_job(db, acc, i) for i in range(5)]
    assert [_claim(db, storage) for _ in range(4)] == [*jobs[:3], None]


def test_expired_lease_is_reclaimed_then_fails_with_a_refund(db, storage):
    acc = _account(db, "flaky", "pro")
    gen_id = _job(db, acc, 0)
    for attempt in range(1, 3):
        assert _claim(db, storage, owner=f"w{attempt}", max_attempts=2) == gen_id
        with db.session(write=True) as session:  # the worker died: its lease runs out
            session.execute(
                update(Generation)
                .where(Generation.id == gen_id)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
    assert _claim(db, storage, max_attempts=2) is None
    with db.session() as session:
        gen = session.scalar(select(Generation).where(Generation.id == gen_id))
        assert (gen.status, gen.error_code, gen.attempts) == ("failed", "RENDER_FAILED", 2)
        assert credits.ledger_sum(session=session, account_id=acc) == 10_000
