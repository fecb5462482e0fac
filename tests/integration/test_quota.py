"""The per-account counts (`generations/quota.py`) on both databases, in process: the claim,
the generation view and the account's usage read "running" the same way."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from stillmotion.accounts.views import account_view
from stillmotion.config import Settings
from stillmotion.db import utcnow
from stillmotion.generations import quota
from stillmotion.generations.models import Generation
from stillmotion.generations.views import to_api
from stillmotion.storage import LocalStorage
from tests.support import rows


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path / "media", public_url="http://test")


class _Ctx:
    settings = Settings()


def _readings(db, storage, account_id: str, gen_id: str) -> tuple[int, dict]:
    with db.session() as session:
        usage = account_view(session=session, ctx=_Ctx(), account_id=account_id)["usage"]
        view = to_api(session.get(Generation, gen_id), session=session, storage=storage)
        return usage["runningJobs"], view


def test_a_dead_workers_job_is_not_running_for_the_claim_the_view_or_the_account(db, storage):
    acc = rows.account(db, "dead-worker", "free")  # one job at a time
    first, second = rows.job(db, acc, 0), rows.job(db, acc, 10)
    assert rows.claim(db, storage, owner="w1") == first
    running, view = _readings(db, storage, acc, first)
    assert running == 1
    assert (view["stage"], view["queuePosition"]) == ("rendering", None)
    _, behind = _readings(db, storage, acc, second)
    assert (behind["stage"], behind["queuePosition"]) == ("throttled", 1)

    with db.session(write=True) as session:  # w1 died: its lease runs out
        session.execute(
            update(Generation)
            .where(Generation.id == first)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    running, view = _readings(db, storage, acc, first)
    assert running == 0  # the account's usage
    assert (view["stage"], view["queuePosition"]) == ("queued", 1)  # the view: waiting, first
    _, behind = _readings(db, storage, acc, second)
    assert (behind["stage"], behind["queuePosition"]) == ("throttled", 2)
    with db.session() as session:
        assert quota.running_jobs(session.connection(), account_id=acc) == 0
    # The claim agrees: the account is under its limit, and the abandoned job goes first.
    assert rows.claim(db, storage, owner="w2") == first
    running, view = _readings(db, storage, acc, first)
    assert running == 1 and view["stage"] == "rendering"
    assert rows.claim(db, storage, owner="w3") is None  # at the limit again


def test_jobs_today_counts_from_midnight_utc(db):
    acc = rows.account(db, "today", "pro")
    rows.job(db, acc)
    with db.session(write=True) as session:
        session.add(rows.generation(acc, created_at=utcnow() - timedelta(days=1, minutes=1)))
    with db.session() as session:
        assert quota.jobs_today(session.connection(), account_id=acc) == 1
        assert quota.usage(session, account_id=acc).generations_today == 1
