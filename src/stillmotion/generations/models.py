from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stillmotion.db import Base, UTCDateTime, new_id, utcnow
from stillmotion.generations.states import FINAL_STATUSES, Stage, Status


class Generation(Base):
    """A job that turns one image into a clip. This table is also the queue (see jobs/)."""

    __tablename__ = "generations"
    __table_args__ = (
        Index("ix_generations_queue", "status", "stage", "created_at"),
        Index("ix_generations_account_created", "account_id", "created_at"),
        # An account's unfinished jobs by stage: the "throttled" count and the claim.
        Index("ix_generations_account_active", "account_id", "status", "stage", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("gen"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    status: Mapped[str] = mapped_column(String(16), default=Status.PROCESSING.value)
    stage: Mapped[str] = mapped_column(String(24), default=Stage.QUEUED.value)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    service: Mapped[str] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(40))
    version: Mapped[str] = mapped_column(String(10))
    aspect_ratio: Mapped[str] = mapped_column(String(8))
    duration: Mapped[int] = mapped_column(Integer)
    motion_intensity: Mapped[str] = mapped_column(String(10))
    prompt: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger)
    camera: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    motion_brush: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    loop: Mapped[bool] = mapped_column(Boolean, default=False)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    credit_cost: Mapped[int] = mapped_column(Integer)
    source_key: Mapped[str] = mapped_column(String(200))
    output_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    poster_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    fps: Mapped[int] = mapped_column(Integer, default=24)
    frames: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Queue bookkeeping
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    provider_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """What a remote provider checkpointed for this job (Runway: the upstream task's id), kept
    across attempts so a re-claimed job resumes the same upstream work."""
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


class IdempotencyRecord(Base):
    """The first response to an `Idempotency-Key`, replayed for 24 hours (API.md §9)."""

    __tablename__ = "idempotency_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12), default="in_progress")
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    # The recovery point: the job this request created, written in the job's own transaction,
    # so a request whose process died before its response was stored is answered from the job
    # instead of being run again.
    generation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("uq_idempotency_account_key", "account_id", "key", unique=True),)
