"""Imports every table so `Base.metadata` is complete (Alembic, tests)."""

from stillmotion.accounts.models import Account, ApiKey
from stillmotion.credits.models import LedgerEntry
from stillmotion.db import Base
from stillmotion.generations.models import Generation, IdempotencyRecord
from stillmotion.uploads.models import Upload
from stillmotion.webhooks.models import DisabledWebhookUrl, WebhookAttempt, WebhookDelivery

__all__ = [
    "Account",
    "ApiKey",
    "Base",
    "DisabledWebhookUrl",
    "Generation",
    "IdempotencyRecord",
    "LedgerEntry",
    "Upload",
    "WebhookAttempt",
    "WebhookDelivery",
]
