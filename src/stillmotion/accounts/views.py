"""The account object of API.md §10, for both transports."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stillmotion.accounts.plans import limits_for
from stillmotion.accounts.service import get_account
from stillmotion.generations.models import Generation
from stillmotion.generations.views import RUNNING_STAGES


def start_of_utc_day(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return datetime.combine(now.date(), time(0), tzinfo=UTC)


def account_view(*, session: Session, ctx, account_id: str) -> dict[str, Any]:
    account = get_account(session=session, account_id=account_id)
    limits = limits_for(account)
    today = session.scalar(
        select(func.count()).where(
            Generation.account_id == account.id, Generation.created_at >= start_of_utc_day()
        )
    )
    running = session.scalar(
        select(func.count()).where(
            Generation.account_id == account.id,
            Generation.status == "processing",
            Generation.stage.in_(RUNNING_STAGES),
        )
    )
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
        "usage": {"generationsToday": today, "runningJobs": running},
        "lowCreditThreshold": threshold,
        "webhookUrl": account.webhook_url,
    }
