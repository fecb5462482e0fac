"""Rows written straight into the database, for tests of rules that read them."""

from __future__ import annotations

from datetime import timedelta

from stillmotion.accounts import service as accounts
from stillmotion.credits import service as credits
from stillmotion.db import new_id, utcnow
from stillmotion.generations.models import Generation
from stillmotion.jobs import queue


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


def account(db, name: str, plan: str = "pro", amount: int = 10_000) -> str:
    """An account of `plan` granted `amount` credits; its id."""
    with db.session(write=True) as session:
        acc, _ = accounts.get_or_create_account(session=session, name=name, plan=plan)
        if amount:
            credits.grant(session=session, account_id=acc.id, amount=amount)
        return acc.id


def job(db, account_id: str, offset_ms: int = 0) -> str:
    """A queued job, charged its 4 credits, created `offset_ms` from now; its id."""
    gen_id = new_id("gen")
    with db.session(write=True) as session:
        credits.charge(session=session, account_id=account_id, amount=4, generation_id=gen_id)
        session.add(
            generation(
                account_id, id=gen_id, created_at=utcnow() + timedelta(milliseconds=offset_ms)
            )
        )
    return gen_id


def claim(db, storage, owner: str = "w", max_attempts: int = 3) -> str | None:
    """What `owner` claims next (its id), or None."""
    with db.session(write=True) as session:
        gen = queue.claim(
            session=session,
            storage=storage,
            owner=owner,
            lease_seconds=30,
            max_attempts=max_attempts,
        )
        return gen.id if gen else None
