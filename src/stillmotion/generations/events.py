"""The webhook events that generations cause, written into the outbox inside the transaction
of the change that causes them (`webhooks.outbox.enqueue`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from stillmotion.credits.service import CreditsLow
from stillmotion.db import utcnow
from stillmotion.generations.models import Generation
from stillmotion.generations.states import Status
from stillmotion.storage import Storage
from stillmotion.times import iso
from stillmotion.webhooks import outbox


def generation_payload(gen: Generation, *, event: str, storage: Storage) -> dict:
    """The seed's payload plus `event` and `error` (API.md §7)."""
    return {
        "event": event,
        "id": gen.id,
        "status": gen.status,
        "url": storage.url(gen.output_key)
        if gen.status == Status.COMPLETED and gen.output_key
        else None,
        "service": gen.service,
        "createdAt": iso(gen.created_at),
        "completedAt": iso(gen.completed_at),
        "metadata": {"duration": gen.duration, "width": gen.width, "height": gen.height},
        "error": {"code": gen.error_code, "message": gen.error_message}
        if gen.status == Status.FAILED
        else None,
    }


def generation_finished(*, session: Session, gen: Generation, storage: Storage) -> None:
    """The `generation.<status>` event for a job that just finished, if it has a webhook URL."""
    if not gen.webhook_url:
        return
    event = f"generation.{gen.status}"
    outbox.enqueue(
        session=session,
        account_id=gen.account_id,
        url=gen.webhook_url,
        event=event,
        payload=generation_payload(gen, event=event, storage=storage),
        generation_id=gen.id,
    )


def credits_low(*, session: Session, crossing: CreditsLow | None) -> None:
    """The `account.credits_low` event for a charge that crossed the threshold, if the account
    has a webhook URL."""
    if crossing is None or not crossing.webhook_url:
        return
    outbox.enqueue(
        session=session,
        account_id=crossing.account_id,
        url=crossing.webhook_url,
        event="account.credits_low",
        payload={
            "event": "account.credits_low",
            "accountId": crossing.account_id,
            "creditBalance": crossing.balance,
            "lowCreditThreshold": crossing.threshold,
            "createdAt": iso(utcnow()),
        },
    )
