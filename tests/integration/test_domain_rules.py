"""The domain rules against the service functions directly, on both databases (in the style of
test_queue.py): the idempotency state machine, the daily cap, the low-credit crossing.

The guarantees that need a real process (kill -9, restarts) stay in the subprocess tests.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from starlette.responses import Response

from stillmotion import errors
from stillmotion.accounts import service as accounts
from stillmotion.accounts.models import Account
from stillmotion.credits import service as credits
from stillmotion.db import new_id, utcnow
from stillmotion.generations import idempotency, quota
from stillmotion.generations.models import IdempotencyRecord
from tests.support import rows


def _account(db, name: str, plan: str = "pro", credits_: int = 1000) -> str:
    with db.session(write=True) as session:
        account, _ = accounts.get_or_create_account(session=session, name=name, plan=plan)
        if credits_:
            credits.grant(session=session, account_id=account.id, amount=credits_)
        return account.id


# --- idempotency ---------------------------------------------------------------------------


def _begin(db, account_id, key="k", request_hash="h1"):
    return idempotency.begin(db=db, account_id=account_id, key=key, request_hash=request_hash)


def test_a_key_runs_once_then_replays_its_stored_response(db):
    acc = _account(db, "idem-replay")
    first = _begin(db, acc)
    assert isinstance(first, idempotency.Fresh) and first.record_id is not None
    with pytest.raises(errors.IdempotencyInProgress):
        _begin(db, acc)  # the same request while the first runs
    with pytest.raises(errors.IdempotencyKeyReused):
        _begin(db, acc, request_hash="h2")  # another request under the same key
    stored = Response(b'{"id": "gen_1"}', status_code=202, headers={"Location": "/x"})
    idempotency.store_response(db=db, record_id=first.record_id, response=stored)
    again = _begin(db, acc)
    assert isinstance(again, idempotency.Replay)
    replayed = again.response()
    assert (replayed.status_code, bytes(replayed.body)) == (202, b'{"id": "gen_1"}')
    assert replayed.headers["location"] == "/x"
    assert replayed.headers["idempotent-replayed"] == "true"
    with pytest.raises(errors.IdempotencyKeyReused):
        _begin(db, acc, request_hash="h2")
    # Keys are per account.
    assert isinstance(_begin(db, _account(db, "idem-other")), idempotency.Fresh)


def test_a_response_that_created_nothing_frees_the_key(db):
    acc = _account(db, "idem-400")
    first = _begin(db, acc)
    bad = Response(b'{"errors": []}', status_code=400)
    idempotency.store_response(db=db, record_id=first.record_id, response=bad)
    assert isinstance(_begin(db, acc, request_hash="h2"), idempotency.Fresh)


def _age(db, record_id: int, seconds: float) -> None:
    with db.session(write=True) as session:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == record_id)
            .values(created_at=utcnow() - timedelta(seconds=seconds))
        )


def test_an_abandoned_request_is_recovered_from_its_job_or_run_again(db):
    acc = _account(db, "idem-abandoned")
    first = _begin(db, acc)
    with db.session(write=True) as session:
        idempotency.mark_created(
            session.connection(), record_id=first.record_id, generation_id="gen_made"
        )
    _age(db, first.record_id, idempotency.LOCK_SECONDS + 1)
    recovered = _begin(db, acc)
    assert isinstance(recovered, idempotency.Recover)
    assert recovered.generation_id == "gen_made"
    with pytest.raises(errors.IdempotencyInProgress):
        _begin(db, acc)  # taken over: in progress again

    without_job = _begin(db, acc, key="k2")
    _age(db, without_job.record_id, idempotency.LOCK_SECONDS + 1)
    again = _begin(db, acc, key="k2")
    assert isinstance(again, idempotency.Fresh)  # run again, under a new record
    with pytest.raises(errors.IdempotencyInProgress):
        _begin(db, acc, key="k2")


def test_an_expired_record_is_forgotten(db):
    acc = _account(db, "idem-expired")
    first = _begin(db, acc)
    idempotency.store_response(db=db, record_id=first.record_id, response=Response(b"{}", 202))
    with db.session(write=True) as session:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == first.record_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert isinstance(_begin(db, acc, request_hash="h2"), idempotency.Fresh)


def test_abandon_releases_a_key_whose_request_created_nothing(db):
    acc = _account(db, "idem-release")
    first = _begin(db, acc)
    idempotency.abandon(db=db, outcome=first)
    assert isinstance(_begin(db, acc, request_hash="h2"), idempotency.Fresh)
    made = _begin(db, acc, key="k3")
    with db.session(write=True) as session:
        idempotency.mark_created(session.connection(), record_id=made.record_id, generation_id="g")
    idempotency.abandon(db=db, outcome=made)
    assert isinstance(_begin(db, acc, key="k3"), idempotency.Recover)  # at once, not after 2 min


# --- the daily cap -------------------------------------------------------------------------


def test_the_daily_cap_counts_todays_jobs_under_the_account_lock(db):
    acc = _account(db, "daily", plan="free")  # 100 a day
    with db.session(write=True) as session:
        for _ in range(99):
            session.add(rows.generation(acc))
        session.add(rows.generation(acc, created_at=utcnow() - timedelta(days=1, minutes=1)))
    with db.session(write=True) as session:
        plan = quota.check_daily(session, account_id=acc)
        assert plan.daily == 100
        session.add(rows.generation(acc))
    with db.session(write=True) as session, pytest.raises(errors.DailyLimitExceeded) as caught:
        quota.check_daily(session, account_id=acc)
    assert 0 < caught.value.retry_after <= 86_400
    assert caught.value.extensions["limit"] == 100


def test_an_unknown_account_has_no_daily_cap_to_check(db):
    with db.session(write=True) as session, pytest.raises(errors.NotFound):
        quota.check_daily(session, account_id="acc_nobody")


# --- the low-credit crossing ---------------------------------------------------------------


def _charge(db, acc, amount):
    with db.session(write=True) as session:
        return credits.charge(
            session=session, account_id=acc, amount=amount, generation_id=new_id("gen")
        )


def test_the_ledger_reports_each_crossing_below_the_threshold_once(db):
    acc = _account(db, "low", credits_=300)
    with db.session(write=True) as session:
        session.execute(update(Account).where(Account.id == acc).values(low_credit_threshold=100))
    assert _charge(db, acc, 150).credits_low is None  # 150 left: not below
    crossing = _charge(db, acc, 100).credits_low  # 50 left: crossed
    assert (crossing.account_id, crossing.balance, crossing.threshold) == (acc, 50, 100)
    assert _charge(db, acc, 10).credits_low is None  # still below: not again
    with db.session(write=True) as session:
        credits.grant(session=session, account_id=acc, amount=200)  # 240: above again
    again = _charge(db, acc, 200).credits_low  # 40 left: a new crossing
    assert again is not None and again.balance == 40
