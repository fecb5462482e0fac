"""Writing webhook events into the outbox, inside the transaction of the change that causes them."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from stillmotion.generations.models import Generation
from stillmotion.generations.views import iso
from stillmotion.storage import Storage
from stillmotion.webhooks.models import DisabledWebhookUrl, WebhookDelivery


def generation_payload(gen: Generation, *, event: str, storage: Storage) -> dict:
    """The seed's payload plus `event` and `error` (API.md §7)."""
    return {
        "event": event,
        "id": gen.id,
        "status": gen.status,
        "url": storage.url(gen.output_key)
        if gen.status == "completed" and gen.output_key
        else None,
        "service": gen.service,
        "createdAt": iso(gen.created_at),
        "completedAt": iso(gen.completed_at),
        "metadata": {"duration": gen.duration, "width": gen.width, "height": gen.height},
        "error": {"code": gen.error_code, "message": gen.error_message}
        if gen.status == "failed"
        else None,
    }


def enqueue(
    *,
    session: Session,
    account_id: str,
    url: str,
    event: str,
    payload: dict,
    generation_id: str | None = None,
) -> WebhookDelivery | None:
    """Queue one delivery; None when the URL was disabled by a 410."""
    disabled = session.scalar(
        select(DisabledWebhookUrl.id).where(
            DisabledWebhookUrl.account_id == account_id, DisabledWebhookUrl.url == url
        )
    )
    if disabled is not None:
        return None
    row = WebhookDelivery(
        account_id=account_id,
        generation_id=generation_id,
        event=event,
        url=url,
        payload=json.dumps(payload, separators=(",", ":")),
    )
    session.add(row)
    session.flush()
    return row


def enqueue_generation_event(*, session: Session, gen: Generation, storage: Storage) -> None:
    """The `generation.<status>` event for a job that just finished, if it has a webhook URL."""
    if not gen.webhook_url:
        return
    event = f"generation.{gen.status}"
    enqueue(
        session=session,
        account_id=gen.account_id,
        url=gen.webhook_url,
        event=event,
        payload=generation_payload(gen, event=event, storage=storage),
        generation_id=gen.id,
    )
