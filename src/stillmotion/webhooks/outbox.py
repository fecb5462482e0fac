"""Writing webhook events into the outbox, inside the transaction of the change that causes them.

The events' payloads are their domains' (`generations/events.py`); this module knows nothing
of what it queues."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from stillmotion.webhooks.models import DisabledWebhookUrl, WebhookDelivery


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
