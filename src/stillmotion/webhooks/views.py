"""The API shapes of webhook secrets and deliveries, for both transports."""

from __future__ import annotations

import json
from typing import Any

from stillmotion.accounts.models import Account
from stillmotion.db import utcnow
from stillmotion.times import iso
from stillmotion.webhooks.models import SENDABLE, WebhookAttempt, WebhookDelivery


def secret_view(account: Account) -> dict[str, Any]:
    """The current secret; while a rotation's grace period lasts, when the previous one stops."""
    expires = account.webhook_secret_previous_expires_at
    live = account.webhook_secret_previous is not None and expires is not None
    return {
        "secret": account.webhook_secret,
        "previousSecretExpiresAt": iso(expires) if live and expires > utcnow() else None,
    }


def attempt_view(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "attemptedAt": iso(attempt.attempted_at),
        "statusCode": attempt.status_code,
        "error": attempt.error,
        "durationMs": attempt.duration_ms,
    }


def delivery_view(row: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    """A delivery (its id is the `webhook-id` header) and every attempt of it, oldest first."""
    try:
        payload = json.loads(row.payload)
    except ValueError:
        payload = None
    return {
        "id": row.id,
        "event": row.event,
        "generationId": row.generation_id,
        "url": row.url,
        "state": row.state,
        "attemptCount": row.attempts,
        "nextAttemptAt": iso(row.next_attempt_at) if row.state in SENDABLE else None,
        "lastStatus": row.last_status,
        "lastError": row.last_error,
        "createdAt": iso(row.created_at),
        "deliveredAt": iso(row.delivered_at),
        "payload": payload,
        "attempts": [attempt_view(a) for a in attempts],
    }
