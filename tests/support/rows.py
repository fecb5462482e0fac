"""Rows written straight into the database, for tests of rules that read them."""

from __future__ import annotations

from stillmotion.db import new_id, utcnow
from stillmotion.generations.models import Generation


def generation(account_id: str, **fields) -> Generation:
    """A gen-2, 2 s, 16:9 job costing 4 credits, queued now unless `fields` say otherwise."""
    values = {
        "id": new_id("gen"),
        "account_id": account_id,
        "service": "runway-i2v",
        "provider": "local",
        "version": "gen-2",
        "aspect_ratio": "16:9",
        "duration": 2,
        "motion_intensity": "medium",
        "prompt": "",
        "seed": 1,
        "credit_cost": 4,
        "source_key": "sources/x.jpg",
        "width": 1280,
        "height": 720,
        "created_at": utcnow(),
    }
    return Generation(**{**values, **fields})
