"""Plans and their limits (API.md §8, the seed's table), an account's own overrides, and the
lookup of an account's limits that the API does on every create."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from stillmotion import errors
from stillmotion.accounts.models import Account

if TYPE_CHECKING:
    from stillmotion.context import Context


@dataclass(frozen=True)
class Limits:
    per_minute: int
    concurrent: int
    daily: int | None  # None = unlimited


PLANS: dict[str, Limits] = {
    "free": Limits(per_minute=10, concurrent=1, daily=100),
    "starter": Limits(per_minute=30, concurrent=3, daily=1_000),
    "pro": Limits(per_minute=60, concurrent=10, daily=10_000),
    # Enterprise limits are set per account; these are the defaults until an operator does.
    "enterprise": Limits(per_minute=600, concurrent=50, daily=None),
}


def limits_for(account: Account) -> Limits:
    """The plan's limits with the account's own overrides applied (`account`: the row, or
    anything with its `plan` and `limit_*` attributes)."""
    base = PLANS[account.plan]
    return Limits(
        per_minute=account.limit_per_minute or base.per_minute,
        concurrent=account.limit_concurrent or base.concurrent,
        daily=account.limit_daily if account.limit_daily is not None else base.daily,
    )


def account_limits(*, db, account_id: str) -> Limits:
    """The plan's limits with the account's overrides (one short read)."""
    with db.session() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise errors.NotFound("no such account")
        return limits_for(account)


async def plan_limits(ctx: Context, *, account_id: str) -> Limits:
    """`account_limits`, remembered a second per process (`ctx.caches.plans`): a plan change
    takes effect within a second; the daily cap is always read in the charging transaction."""
    hit = ctx.caches.plans.get(account_id)
    if hit is not None:
        return hit
    result = await ctx.db.run(account_limits, db=ctx.db, account_id=account_id)
    ctx.caches.plans.put(account_id, result)
    return result


def set_overrides(
    *,
    session: Session,
    account_name: str,
    plan: str | None = None,
    per_minute: int | None = None,
    concurrent: int | None = None,
    daily: int | None = None,
    low_credit_threshold: int | None = None,
    reset: bool = False,
) -> Account:
    """An operator's change of an account's plan and per-account limits (enterprise deals).
    `reset` first clears the overrides, so the plan's numbers apply again."""
    account = session.scalar(select(Account).where(Account.name == account_name))
    if account is None:
        raise errors.NotFound(f"no account {account_name!r}")
    if plan is not None:
        if plan not in PLANS:
            raise errors.ValidationFailed(
                f"unknown plan {plan!r}; known: {', '.join(PLANS)}", field="plan"
            )
        account.plan = plan
    if reset:
        account.limit_per_minute = account.limit_concurrent = account.limit_daily = None
    for field, value in (
        ("limit_per_minute", per_minute),
        ("limit_concurrent", concurrent),
        ("limit_daily", daily),
        ("low_credit_threshold", low_credit_threshold),
    ):
        if value is not None:
            if value < (0 if field == "low_credit_threshold" else 1):
                raise errors.ValidationFailed(f"{field} must be positive", field=field)
            setattr(account, field, value)
    session.flush()
    return account
