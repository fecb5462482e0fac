"""Pricing, the ledger and the balance.

Every change is one ledger row plus one conditional UPDATE of `accounts.credit_balance` in the
caller's transaction. A charge is `UPDATE … SET credit_balance = credit_balance - cost WHERE
id = … AND credit_balance >= cost`: the database, not Python, decides whether the money is
there, so concurrent charges can never take the balance below zero (and the CHECK constraint
would refuse it if they tried).
"""

from __future__ import annotations

import math

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stillmotion import errors
from stillmotion.accounts.models import Account
from stillmotion.config import Settings
from stillmotion.credits.models import KINDS, LedgerEntry


def price(*, settings: Settings, version: str, duration: int, motion_brush: bool = False) -> int:
    """Credits for one generation (API.md §4): per-second price × seconds, × brush multiplier."""
    cost = settings.prices[version] * duration
    if motion_brush:
        cost = math.ceil(cost * settings.brush_multiplier)
    return cost


def _apply(
    *,
    session: Session,
    account_id: str,
    kind: str,
    amount: int,
    generation_id: str | None,
    note: str | None,
    require_funds: bool,
) -> LedgerEntry:
    assert kind in KINDS
    query = (
        update(Account)
        .where(Account.id == account_id)
        .values(credit_balance=Account.credit_balance + amount)
        .returning(Account.credit_balance)
    )
    if amount < 0 and require_funds:
        query = query.where(Account.credit_balance >= -amount)
    new_balance = session.execute(query).scalar_one_or_none()
    if new_balance is None:
        available = session.scalar(select(Account.credit_balance).where(Account.id == account_id))
        if available is None:
            raise errors.NotFound("no such account")
        raise errors.InsufficientCredits(required=-amount, available=available)
    entry = LedgerEntry(
        account_id=account_id,
        kind=kind,
        amount=amount,
        balance_after=new_balance,
        generation_id=generation_id,
        note=note,
    )
    session.add(entry)
    session.flush()
    return entry


def charge(*, session: Session, account_id: str, amount: int, generation_id: str) -> LedgerEntry:
    """Take `amount` for a generation, or raise `InsufficientCredits` and change nothing."""
    return _apply(
        session=session,
        account_id=account_id,
        kind="charge",
        amount=-amount,
        generation_id=generation_id,
        note=None,
        require_funds=True,
    )


def refund(*, session: Session, generation_id: str, note: str) -> LedgerEntry | None:
    """Give back what `generation_id` was charged, once. None when it was never charged or
    was refunded already (the unique (generation_id, kind) constraint is the last guard)."""
    charged = session.scalar(
        select(LedgerEntry).where(
            LedgerEntry.generation_id == generation_id, LedgerEntry.kind == "charge"
        )
    )
    if charged is None:
        return None
    already = session.scalar(
        select(LedgerEntry.id).where(
            LedgerEntry.generation_id == generation_id, LedgerEntry.kind == "refund"
        )
    )
    if already is not None:
        return None
    try:
        with session.begin_nested():
            return _apply(
                session=session,
                account_id=charged.account_id,
                kind="refund",
                amount=-charged.amount,
                generation_id=generation_id,
                note=note,
                require_funds=False,
            )
    except IntegrityError:
        return None


def grant(
    *, session: Session, account_id: str, amount: int, kind: str = "grant", note: str | None = None
) -> LedgerEntry:
    """Add (or, for an adjustment, possibly remove) credits. A negative adjustment cannot take
    the balance below zero."""
    if kind not in ("grant", "topup", "adjustment"):
        raise errors.ValidationFailed(f"unknown ledger kind {kind!r}", field="kind")
    if kind != "adjustment" and amount <= 0:
        raise errors.ValidationFailed("amount must be positive", field="amount")
    return _apply(
        session=session,
        account_id=account_id,
        kind=kind,
        amount=amount,
        generation_id=None,
        note=note,
        require_funds=True,
    )


def ledger(
    *, session: Session, account_id: str, limit: int = 100, before: int | None = None
) -> list[LedgerEntry]:
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    if before is not None:
        query = query.where(LedgerEntry.id < before)
    return list(session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit)))


def ledger_sum(*, session: Session, account_id: str) -> int:
    return session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.account_id == account_id
        )
    )
