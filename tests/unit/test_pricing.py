"""Pricing (API.md §4) from configuration, and the ledger rules on a real SQLite database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from stillmotion import errors
from stillmotion.accounts import service as accounts
from stillmotion.accounts.limits import Decision
from stillmotion.config import Settings
from stillmotion.credits import service as credits
from stillmotion.db import Base, Database
from stillmotion.webhooks.models import WebhookDelivery


@pytest.mark.parametrize(
    ("version", "duration", "brush", "cost"),
    [
        ("gen-2", 5, False, 10),
        ("gen-2", 10, False, 20),
        ("gen-3", 5, False, 25),
        ("gen-3", 10, False, 50),
        ("gen-4", 5, False, 100),
        ("gen-4", 10, False, 200),
        ("gen-4", 10, True, 500),
        ("gen-2", 2, False, 4),
        ("gen-3", 3, True, 38),  # 15 × 2.5 = 37.5, rounded up: never undercharge
    ],
)
def test_the_price_table(version, duration, brush, cost):
    settings = Settings(_env_file=None)
    assert (
        credits.price(settings=settings, version=version, duration=duration, motion_brush=brush)
        == cost
    )


def test_prices_come_from_configuration(monkeypatch):
    monkeypatch.setenv("STILLMOTION_PRICE_GEN3", "7")
    monkeypatch.setenv("STILLMOTION_BRUSH_MULTIPLIER", "3")
    settings = Settings()
    assert credits.price(settings=settings, version="gen-3", duration=4) == 28
    assert credits.price(settings=settings, version="gen-3", duration=4, motion_brush=True) == 84


@pytest.fixture
def db(tmp_path):
    import stillmotion.models  # noqa: F401  (every table)

    database = Database(f"sqlite:///{tmp_path / 'unit.db'}")
    Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


def _account(db, **values) -> str:
    with db.session(write=True) as session:
        account, _ = accounts.get_or_create_account(session=session, name="unit")
        for k, v in values.items():
            setattr(account, k, v)
        return account.id


def test_ledger_kinds_and_a_balance_that_never_goes_negative(db):
    settings = Settings(_env_file=None)
    account_id = _account(db)
    with db.session(write=True) as session:
        credits.grant(session=session, account_id=account_id, amount=30, settings=settings)
        credits.grant(
            session=session, account_id=account_id, amount=5, kind="topup", settings=settings
        )
        with pytest.raises(errors.ValidationFailed):
            credits.grant(session=session, account_id=account_id, amount=0, settings=settings)
        with pytest.raises(errors.ValidationFailed):
            credits.grant(
                session=session, account_id=account_id, amount=5, kind="charge", settings=settings
            )
    with db.session(write=True) as session, pytest.raises(errors.InsufficientCredits) as info:
        credits.grant(
            session=session, account_id=account_id, amount=-36, kind="adjustment", settings=settings
        )
    assert info.value.extensions == {"creditsRequired": 36, "creditsAvailable": 35}
    with db.session(write=True) as session:
        credits.charge(
            session=session,
            account_id=account_id,
            amount=35,
            generation_id="gen_a",
            settings=settings,
        )
        with pytest.raises(errors.InsufficientCredits):
            credits.charge(
                session=session,
                account_id=account_id,
                amount=1,
                generation_id="gen_b",
                settings=settings,
            )
    with db.session(write=True) as session:
        assert credits.refund(session=session, generation_id="gen_a", note="failed") is not None
        assert credits.refund(session=session, generation_id="gen_a", note="again") is None
        assert credits.refund(session=session, generation_id="gen_never", note="x") is None
    with db.session() as session:
        entries = credits.ledger(session=session, account_id=account_id)
        assert [(e.kind, e.amount, e.balance_after) for e in reversed(entries)] == [
            ("grant", 30, 30),
            ("topup", 5, 35),
            ("charge", -35, 0),
            ("refund", 35, 35),
        ]
        assert credits.ledger_sum(session=session, account_id=account_id) == 35
        page, cursor = credits.ledger_page(session=session, account_id=account_id, limit=3)
        assert [e["kind"] for e in page] == ["refund", "charge", "topup"]
        rest, end = credits.ledger_page(
            session=session, account_id=account_id, limit=3, before=int(cursor)
        )
        assert [e["kind"] for e in rest] == ["grant"] and end is None


def test_credits_low_flag_without_a_webhook_url(db):
    settings = Settings(_env_file=None, low_credit_threshold=10)
    account_id = _account(db)
    with db.session(write=True) as session:
        credits.grant(session=session, account_id=account_id, amount=12, settings=settings)
        credits.charge(
            session=session, account_id=account_id, amount=4, generation_id="g1", settings=settings
        )
    with db.session() as session:
        from stillmotion.accounts.models import Account

        assert session.get(Account, account_id).credits_low_notified
        assert session.scalars(select(WebhookDelivery)).all() == []


def test_rate_limit_headers_follow_the_ietf_draft():
    decision = Decision("create", limit=10, remaining=3, reset_at=1_000_042.2)
    headers = dict(decision.headers(now=1_000_000.0))
    assert headers == {
        b"x-ratelimit-limit": b"10",
        b"x-ratelimit-remaining": b"3",
        b"x-ratelimit-reset": b"1000043",
        b"ratelimit-policy": b'"create";q=10;w=60',
        b"ratelimit": b'"create";r=3;t=43',
    }
    assert decision.retry_after(now=1_000_000.0) == 43
    assert decision.retry_after(now=1_000_100.0) == 1
