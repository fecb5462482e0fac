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
    available = Gauge(
        "stillmotion_service_available",
        "1 when the service takes jobs now (as this process's provider sees it), else 0",
        ["service", "provider"],
        registry=registry,
    )
    events = Gauge(
        "stillmotion_provider_events",
        "Upstream events of this process's providers since it started (Runway: create, poll, "
        "download, refusal, backoff, cancel)",
        ["service", "event"],
        registry=registry,
    )
    for spec in ctx.catalogue:
        ok, _ = ctx.providers.availability(spec)
        available.labels(service=spec.id, provider=spec.provider.value).set(1 if ok else 0)
    for service, counts in ctx.providers.counters().items():
        for event, count in counts.items():
            events.labels(service=service, event=event).set(count)
    return generate_latest(registry)
