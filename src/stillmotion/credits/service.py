"""Pricing, the ledger and the balance.

Every change is one ledger row plus one conditional UPDATE of `accounts.credit_balance` in the
caller's transaction. A charge is `UPDATE … SET credit_balance = credit_balance - cost WHERE
id = … AND credit_balance >= cost`: the database, not Python, decides whether the money is
there, so concurrent charges can never take the balance below zero (and the CHECK constraint
would refuse it if they tried).

Low credits: when a charge takes the balance below the account's threshold, the charge's
`Change` reports the crossing (`credits_low`) and `accounts.credits_low_notified` is set so the
next charges stay quiet; the caller sends the `account.credits_low` event in the same
transaction (`generations/events.py`): the ledger knows nothing of webhooks. A grant, top-up or
adjustment that lifts the balance back to the threshold or above clears the flag, so the next
crossing is reported again. (A refund does not clear it: charge-then-cancel around the
threshold is one episode of low credit, not many.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stillmotion import errors
from stillmotion.accounts.models import Account
from stillmotion.config import Settings, get_settings
from stillmotion.credits.models import KINDS, LedgerEntry
from stillmotion.services.catalogue import ServiceSpec
from stillmotion.times import iso


def price(
    *,
    settings: Settings,
    version: str,
    duration: int,
    motion_brush: bool = False,
    spec: ServiceSpec | None = None,
) -> int:
    """Credits for one generation (API.md §4): per-second price × seconds, × brush multiplier.
    The per-second price is the service's (`spec.prices`, from the catalogue, which takes the
    server's `STILLMOTION_PRICE_*` for versions its file leaves unpriced); without a service,
    the server's."""
    per_second = spec.prices[version] if spec is not None else settings.prices[version]
    cost = per_second * duration
    if motion_brush:
        cost = math.ceil(cost * settings.brush_multiplier)
    return cost


def threshold_of(account_threshold: int | None, settings: Settings | None = None) -> int:
    """The account's low-credit threshold, or the configured default."""
    if account_threshold is not None:
        return account_threshold
    return (settings or get_settings()).low_credit_threshold


@dataclass(frozen=True)
class CreditsLow:
    """A charge took the account's balance below its threshold (reported once per episode)."""

    account_id: str
    balance: int
    threshold: int
    webhook_url: str | None  # the account's webhook URL, where the event goes (if any)


@dataclass(frozen=True)
class Change:
    """What one ledger change did: its kind, the signed amount, the balance after it, and a
    low-credit crossing if this change made one."""

    kind: str
    amount: int
    balance_after: int
    credits_low: CreditsLow | None = None


# Built once: these run on every create, and building a statement costs more than running it.
_ADD = (
    update(Account)
    .where(Account.id == bindparam("account_id"))
    .values(credit_balance=Account.credit_balance + bindparam("amount"))
    .returning(
        Account.credit_balance,
        Account.low_credit_threshold,
        Account.credits_low_notified,
        Account.webhook_url,
    )
)
_ADD_IF_FUNDED = _ADD.where(Account.credit_balance >= bindparam("required"))
_INSERT_ENTRY = insert(LedgerEntry.__table__)
_BALANCE = select(Account.credit_balance).where(Account.id == bindparam("account_id"))


def _apply(
    *,
    session: Session,
    account_id: str,
    kind: str,
    amount: int,
    generation_id: str | None,
    note: str | None,
    require_funds: bool,
    settings: Settings | None = None,
) -> Change:
    assert kind in KINDS
    # Core statements on the session's connection (no ORM unit of work on the money path);
    # pending ORM changes go first, and the account's in-session copy is expired after.
    session.flush()
    conn = session.connection()
    params = {"account_id": account_id, "amount": amount}
    if amount < 0 and require_funds:
        row = conn.execute(_ADD_IF_FUNDED, {**params, "required": -amount}).first()
    else:
        row = conn.execute(_ADD, params).first()
    if row is None:
        available = conn.scalar(_BALANCE, {"account_id": account_id})
        if available is None:
            raise errors.NotFound("no such account")
        raise errors.InsufficientCredits(required=-amount, available=available)
    new_balance = row.credit_balance
    threshold = threshold_of(row.low_credit_threshold, settings)
    crossing = None
    if kind == "charge" and new_balance < threshold and not row.credits_low_notified:
        session.execute(
            update(Account).where(Account.id == account_id).values(credits_low_notified=True)
        )
        crossing = CreditsLow(account_id, new_balance, threshold, row.webhook_url)
    elif kind != "refund" and row.credits_low_notified and new_balance >= threshold:
        session.execute(
            update(Account).where(Account.id == account_id).values(credits_low_notified=False)
        )
    conn.execute(
        _INSERT_ENTRY,
        {
            "account_id": account_id,
            "kind": kind,
            "amount": amount,
            "balance_after": new_balance,
            "generation_id": generation_id,
            "note": note,
        },
    )
    cached = session.identity_map.get(session.identity_key(Account, account_id))
    if cached is not None:
        session.expire(cached, ["credit_balance", "credits_low_notified"])
    return Change(kind=kind, amount=amount, balance_after=new_balance, credits_low=crossing)


def charge(
    *,
    session: Session,
    account_id: str,
    amount: int,
    generation_id: str,
    settings: Settings | None = None,
) -> Change:
    """Take `amount` for a generation, or raise `InsufficientCredits` and change nothing."""
    return _apply(
        session=session,
        account_id=account_id,
        kind="charge",
        amount=-amount,
        generation_id=generation_id,
        note=None,
        require_funds=True,
        settings=settings,
    )


def refund(*, session: Session, generation_id: str, note: str) -> Change | None:
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
    *,
    session: Session,
    account_id: str,
    amount: int,
    kind: str = "grant",
    note: str | None = None,
    settings: Settings | None = None,
) -> Change:
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
        settings=settings,
    )


def ledger(
    *, session: Session, account_id: str, limit: int = 100, before: int | None = None
) -> list[LedgerEntry]:
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    if before is not None:
        query = query.where(LedgerEntry.id < before)
    return list(session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit)))


def entry_view(entry: LedgerEntry) -> dict:
    """One ledger entry as the API shows it."""
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": entry.amount,
        "balanceAfter": entry.balance_after,
        "generationId": entry.generation_id,
        "note": entry.note,
        "createdAt": iso(entry.created_at),
    }


MAX_ENTRY_ID = 2**63 - 1  # a 64-bit signed id column: larger values cannot be bound


def ledger_page(
    *, session: Session, account_id: str, limit: int = 50, before: int | None = None
) -> tuple[list[dict], str | None]:
    """Newest first; the cursor is the id to pass as `before` for the next page."""
    if not 1 <= limit <= 500:
        raise errors.ValidationFailed("limit must be 1 … 500", field="limit")
    if before is not None and not 0 <= before <= MAX_ENTRY_ID:
        raise errors.ValidationFailed(
            f"before must be a ledger entry id, 0 … {MAX_ENTRY_ID}", field="before"
        )
    rows = ledger(session=session, account_id=account_id, limit=limit + 1, before=before)
    cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return [entry_view(e) for e in rows[:limit]], cursor


def ledger_sum(*, session: Session, account_id: str) -> int:
    return session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.account_id == account_id
        )
    )
