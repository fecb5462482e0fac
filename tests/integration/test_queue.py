"""The queue's claim rules on both databases, against the service functions directly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from stillmotion.credits import service as credits
from stillmotion.db import utcnow
from stillmotion.generations.models import Generation
from stillmotion.storage import LocalStorage
from tests.support import rows


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path / "media", public_url="http://test")


def test_a_busy_account_does_not_block_the_others(db, storage):
    busy = rows.account(db, "busy", "free")  # one job at a time
    idle = rows.account(db, "idle", "pro")
    backlog = [rows.job(db, busy, i) for i in range(25)]
    late = rows.job(db, idle, 1000)
    assert rows.claim(db, storage) == backlog[0]
    # busy is at its limit with 24 older jobs waiting: the idle account's job starts anyway
    assert rows.claim(db, storage) == late
    assert rows.claim(db, storage) is None


def test_jobs_start_in_submission_order_within_an_account(db, storage):
    acc = rows.account(db, "starter", "starter")  # three at a time
    jobs = [rows.job(db, acc, i) for i in range(5)]
    assert [rows.claim(db, storage) for _ in range(4)] == [*jobs[:3], None]


def test_expired_lease_is_reclaimed_then_fails_with_a_refund(db, storage):
    acc = rows.account(db, "flaky", "pro")
    gen_id = rows.job(db, acc, 0)
    for attempt in range(1, 3):
        assert rows.claim(db, storage, owner=f"w{attempt}", max_attempts=2) == gen_id
        with db.session(write=True) as session:  # the worker died: its lease runs out
            session.execute(
                update(Generation)
                .where(Generation.id == gen_id)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
    assert rows.claim(db, storage, max_attempts=2) is None
    with db.session() as session:
        gen = session.scalar(select(Generation).where(Generation.id == gen_id))
        assert (gen.status, gen.error_code, gen.attempts) == ("failed", "RENDER_FAILED", 2)
        assert credits.ledger_sum(session=session, account_id=acc) == 10_000
