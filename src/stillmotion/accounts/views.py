"""The account object of API.md §10, for both transports."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from stillmotion.accounts.plans import limits_for
from stillmotion.accounts.service import get_account
from stillmotion.generations import quota


def account_view(*, session: Session, ctx, account_id: str) -> dict[str, Any]:
    account = get_account(session=session, account_id=account_id)
    limits = limits_for(account)
    usage = quota.usage(session, account_id=account.id)
    threshold = (
        account.low_credit_threshold
        if account.low_credit_threshold is not None
        else ctx.settings.low_credit_threshold
    )
    return {
        "id": account.id,
        "name": account.name,
        "plan": account.plan,
        "creditBalance": account.credit_balance,
        "limits": {
            "requestsPerMinute": limits.per_minute,
            "concurrentJobs": limits.concurrent,
            "generationsPerDay": limits.daily,
            "readsPerMinute": ctx.settings.read_limit_per_minute,
        },
        "usage": {
            "generationsToday": usage.generations_today,
            "runningJobs": usage.running_jobs,
        },
        "lowCreditThreshold": threshold,
        "webhookUrl": account.webhook_url,
    }
