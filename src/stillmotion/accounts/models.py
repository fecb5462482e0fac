from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from stillmotion.db import Base, UTCDateTime, new_id, utcnow


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("credit_balance >= 0", name="balance_not_negative"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("acc"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    plan: Mapped[str] = mapped_column(String(20), default="free")
    # The balance is the sum of the ledger; it is kept here too so a charge is one atomic,
    # conditional UPDATE (`… WHERE credit_balance >= cost`). Tests check it against the ledger.
    credit_balance: Mapped[int] = mapped_column(Integer, default=0)
    low_credit_threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    credits_low_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    # Enterprise (or any) per-account overrides of the plan's limits; NULL = the plan's.
    limit_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    limit_concurrent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    limit_daily: Mapped[int | None] = mapped_column(Integer, nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_secret: Mapped[str] = mapped_column(String(100))
    webhook_secret_previous: Mapped[str | None] = mapped_column(String(100), nullable=True)
    webhook_secret_previous_expires_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    keys: Mapped[list[ApiKey]] = relationship(back_populates="account")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("key"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(10), default="user")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    account: Mapped[Account] = relationship(back_populates="keys", lazy="joined")
