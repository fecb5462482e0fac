"""Plans and their limits (API.md §8, the seed's table)."""

from __future__ import annotations

from dataclasses import dataclass

from stillmotion.accounts.models import Account


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
