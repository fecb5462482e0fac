"""The per-account counts (`generations/quota.py`) on both databases, in process: the claim,
the generation view and the account's usage read "running" the same way."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from stillmotion.accounts import service as accounts
from stillmotion.accounts.views import account_view
from stillmotion.config import Settings
from stillmotion.credits import service as credits
from stillmotion.db import Database, new_id, utcnow
from stillmotion.generations import quota
from stillmotion.generations.models import Generation
from stillmotion.generations.views import to_api
from stillmotion.jobs import queue
from stillmotion.migrations import upgrade
from stillmotion.storage import LocalStorage
from tests.support import rows


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'q.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database("qa_" + uuid.uuid4().hex[:10])
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path / "media", public_url="http://test")


class _Ctx:
    settings = Settings()


def _account(db, name: str, plan: str) -> str:
    with db.session(write=True) as session:
        account, _ = accounts.get_or_create_account(session=session, name=name, plan=plan)
        credits.grant(session=session, account_id=account.id, amount=10_000)
        return account.id


def _job(db, account_id: str, offset_ms: int = 0) -> str:
    gen_id = new_id("gen")
    with db.session(write=True) as session:
        credits.charge(session=session, account_id=account_id, amount=4, generation_id=gen_id)
        session.add(
            rows.generation(
                account_id, id=gen_id, created_at=utcnow() + timedelta(milliseconds=offset_ms)
            )
        )
    return gen_id


def _claim(db, storage, owner="w"):
    with db.session(write=True) as session:
        gen = queue.claim(
            session=session, storage=storage, owner=owner, lease_seconds=30, max_attempts=3
        )
        return gen.id if gen else None


def _readings(db, storage, account_id: str, gen_id: str) -> tuple[int, dict]:
    with db.session() as session:
        usage = account_view(session=session, ctx=_Ctx(), account_id=account_id)["usage"]
        view = to_api(session.get(Generation, gen_id), session=session, storage=storage)
        return usage["runningJobs"], view


def test_a_dead_workers_job_is_not_running_for_the_claim_the_view_or_the_account(db, storage):
    acc = _account(db, "dead-worker", "free")  # one job at a time
    first, second = _job(db, acc, 0), _job(db, acc, 10)
    assert _claim(db, storage, owner="w1") == first
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
    assert _claim(db, storage, owner="w2") == first
    running, view = _readings(db, storage, acc, first)
    assert running == 1 and view["stage"] == "rendering"
    assert _claim(db, storage, owner="w3") is None  # at the limit again


def test_jobs_today_counts_from_midnight_utc(db):
    acc = _account(db, "today", "pro")
    _job(db, acc)
    with db.session(write=True) as session:
        session.add(rows.generation(acc, created_at=utcnow() - timedelta(days=1, minutes=1)))
    with db.session() as session:
        assert quota.jobs_today(session.connection(), account_id=acc) == 1
        assert quota.usage(session, account_id=acc).generations_today == 1
