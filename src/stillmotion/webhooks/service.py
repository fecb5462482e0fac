"""Webhook secrets, the account webhook URL, the delivery log and manual redelivery.

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
from stillmotion.db import Database, utcnow
from stillmotion.generations import service as generations
from stillmotion.webhooks import delivery
from stillmotion.webhooks.models import DisabledWebhookUrl, WebhookAttempt, WebhookDelivery

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
    """The caller's deliveries, oldest first: one generation's, or the newest `limit` of all."""
    if not 1 <= limit <= 100:
        raise errors.ValidationFailed("limit must be 1 … 100", field="limit")
    query = select(WebhookDelivery).where(WebhookDelivery.account_id == principal.account_id)
    if generation_id is not None:
        generations.get(session=session, principal=principal, generation_id=generation_id)
        query = query.where(WebhookDelivery.generation_id == generation_id)
    rows = session.scalars(
        query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit)
    ).all()
    return [(row, _attempts(session, row.id)) for row in reversed(rows)]


def get_delivery(
    *, session: Session, principal: Principal, delivery_id: str, generation_id: str | None = None
) -> WebhookDelivery:
    """The caller's delivery; another account's (or another generation's) id is 404."""
    row = session.get(WebhookDelivery, delivery_id) if isinstance(delivery_id, str) else None
    if (
        row is None
        or row.account_id != principal.account_id
        or (generation_id is not None and row.generation_id != generation_id)
    ):
        raise errors.NotFound(f"no webhook delivery {delivery_id!r}")
    return row


def redeliver(
    *,
    db: Database,
    settings: Settings,
    principal: Principal,
    delivery_id: str,
    generation_id: str | None = None,
) -> Logged:
    """Send a delivery again now, with the same `webhook-id`, and return it with its log.

    Works in any state. The attempt is recorded like the loop's; see `delivery.record` for how
    its outcome moves the state. While another attempt of it is in flight: `Conflict`.
    """
    with db.session(write=True) as session:
        row = get_delivery(
            session=session,
            principal=principal,
            delivery_id=delivery_id,
            generation_id=generation_id,
        )
        now = utcnow()
        if row.lease_expires_at is not None and row.lease_expires_at > now:
            raise errors.Conflict("An attempt of this delivery is in progress; retry shortly.")
        claimed = delivery.lease(
            session=session, row=row, seconds=delivery.lease_seconds(settings), now=now
        )
    delivery.deliver(db=db, settings=settings, claimed=claimed, manual=True)
    with db.session() as session:
        row = get_delivery(session=session, principal=principal, delivery_id=delivery_id)
        return row, _attempts(session, row.id)
