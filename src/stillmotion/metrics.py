"""Prometheus metrics: the queue's state, read from the database at scrape time, so every API
process reports the same numbers whichever workers are running."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select

from stillmotion.generations.models import Generation

CONTENT_TYPE = CONTENT_TYPE_LATEST


def render(ctx) -> bytes:
    registry = CollectorRegistry()
    by_status = Gauge(
        "stillmotion_generations",
        "Generations by status and stage",
        ["status", "stage"],
        registry=registry,
    )
    with ctx.db.session() as session:
        rows = session.execute(
            select(Generation.status, Generation.stage, func.count()).group_by(
                Generation.status, Generation.stage
            )
        ).all()
    for status, stage, count in rows:
        by_status.labels(status=status, stage=stage).set(count)
    return generate_latest(registry)
