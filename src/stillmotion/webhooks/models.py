from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stillmotion.db import Base, UTCDateTime, new_id, utcnow


class DeliveryState(StrEnum):
    """Where a delivery stands. `queued`: a redelivery was asked for; the loop sends it next."""

    PENDING = "pending"  # waiting for its next scheduled attempt at `next_attempt_at`
    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED = "failed"  # the schedule is exhausted
    DISABLED = "disabled"  # the receiver answered 410


# What the delivery loop claims (when due and not leased).
SENDABLE = frozenset({DeliveryState.PENDING, DeliveryState.QUEUED})


class WebhookDelivery(Base):
    """The outbox: one event to one URL, written in the transaction of the change that caused it.

    Its id is the Standard Webhooks `webhook-id`, the same on every attempt.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("msg"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    generation_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    event: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    # pending → delivered | failed | disabled; any of them → queued (a redelivery) → the same
    state: Mapped[str] = mapped_column(String(12), default=DeliveryState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery, kept for the delivery log."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class DisabledWebhookUrl(Base):
    """A URL whose receiver answered 410 Gone: no further deliveries go there."""

    __tablename__ = "disabled_webhook_urls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    disabled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
