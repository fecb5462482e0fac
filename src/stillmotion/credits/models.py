from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stillmotion.db import Base, UTCDateTime, utcnow

KINDS = ("grant", "topup", "charge", "refund", "adjustment")


class LedgerEntry(Base):
    """One append-only change of an account's credits. The balance is their sum."""

    __tablename__ = "ledger_entries"
    # A generation is charged once and refunded at most once: the database enforces it.
    __table_args__ = (UniqueConstraint("generation_id", "kind", name="uq_ledger_generation_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(Integer)
    balance_after: Mapped[int] = mapped_column(Integer)
    generation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
