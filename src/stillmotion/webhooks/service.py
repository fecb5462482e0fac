"""Webhook secrets, the account webhook URL, the delivery log and redelivery (queued).

The rules live here once; REST and GraphQL call these functions.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from stillmotion import errors, net
from stillmotion.accounts.models import Account
from stillmotion.accounts.service import Principal, get_account
from stillmotion.client.webhooks import generate_secret
from stillmotion.config import Settings
from stillmotion.db import utcnow
from stillmotion.webhooks.models import (
    DeliveryState,
    DisabledWebhookUrl,
    WebhookAttempt,
    WebhookDelivery,
)

Logged = tuple[WebhookDelivery, list[WebhookAttempt]]


def rotate_secret(*, session: Session, account_id: str, grace: timedelta) -> Account:
    """A new current secret; the old one keeps signing (second signature) for `grace`.

    Rotating again within the grace period drops the oldest secret: at most two ever sign.
    """
    account = get_account(session=session, account_id=account_id)
    account.webhook_secret_previous = account.webhook_secret
    account.webhook_secret_previous_expires_at = utcnow() + grace if grace else None
    account.webhook_secret = generate_secret()
    session.flush()
    return account


def check_webhook_url(url: str, *, settings: Settings) -> None:
    """Refuse a webhook URL that is malformed or resolves to a non-public address.

    Blocking (DNS). A host that does not resolve is a validation error, not a server error.
    """
    try:
        net.check_url(url, allow_networks=settings.networks)
    except errors.UrlNotAllowed as exc:
        raise exc.about("url") from None
    except net.DeliveryError as exc:
        raise errors.ValidationFailed(f"url: {exc}", field="url") from None


def set_account_webhook_url(*, session: Session, account_id: str, url: str | None) -> Account:
    """Set (or clear, with None) the URL for account events such as `account.credits_low`.

    Setting a URL again re-enables it if a receiver there had answered 410. Check it first
    with `check_webhook_url`.
    """
    account = get_account(session=session, account_id=account_id)
    account.webhook_url = url or None
    if url:
        session.execute(
            delete(DisabledWebhookUrl).where(
                DisabledWebhookUrl.account_id == account_id, DisabledWebhookUrl.url == url
            )
        )
    session.flush()
    return account


def _attempts(session: Session, delivery_id: str) -> list[WebhookAttempt]:
    return list(
        session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
        )
    )


def list_deliveries(
    *, session: Session, principal: Principal, generation_id: str | None, limit: int = 50
) -> list[Logged]:
    """The caller's deliveries, oldest first: one generation's, or the newest `limit` of all.

    That the generation is the caller's is the transport's to check first (`generations.get`:
    404 for another account's), since webhooks sit below generations."""
    if not 1 <= limit <= 100:
        raise errors.ValidationFailed("limit must be 1 … 100", field="limit")
    query = select(WebhookDelivery).where(WebhookDelivery.account_id == principal.account_id)
    if generation_id is not None:
        errors.check_text(generation_id, field="generationId")
        query = query.where(WebhookDelivery.generation_id == generation_id)
    rows = session.scalars(
        query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit)
    ).all()
    return [(row, _attempts(session, row.id)) for row in reversed(rows)]


def get_delivery(
    *, session: Session, principal: Principal, delivery_id: str, generation_id: str | None = None
) -> WebhookDelivery:
    """The caller's delivery; another account's (or another generation's) id is 404."""
    row = (
        session.get(WebhookDelivery, errors.check_text(delivery_id, field="id"))
        if isinstance(delivery_id, str)
        else None
    )
    if (
        row is None
        or row.account_id != principal.account_id
        or (generation_id is not None and row.generation_id != generation_id)
    ):
        raise errors.NotFound(f"no webhook delivery {errors.quote(delivery_id)}")
    return row


def redeliver(
    *, session: Session, principal: Principal, delivery_id: str, generation_id: str | None = None
) -> Logged:
    """Queue a delivery to be sent again now, with the same `webhook-id`; return it with its log.

    Works in any state: the row becomes `queued`, due now, and the delivery loop sends it (see
    `delivery.record` for how the outcome moves it on). Nothing here waits for the receiver, so
    a crowd of redeliveries to one that never answers holds no request thread. Already queued,
    or an attempt of it in flight: `Conflict`.
    """
    row = get_delivery(
        session=session, principal=principal, delivery_id=delivery_id, generation_id=generation_id
    )
    now = utcnow()
    leased = row.lease_expires_at is not None and row.lease_expires_at > now
    if row.state == DeliveryState.QUEUED or leased:
        raise errors.Conflict(
            "This delivery is already queued or being sent; its attempt will appear in the "
            "delivery log."
        )
    row.state = DeliveryState.QUEUED
    row.next_attempt_at = now
    session.flush()
    return row, _attempts(session, row.id)
