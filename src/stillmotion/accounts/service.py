"""Accounts and API keys: creation, lookup by key, revocation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from stillmotion import errors
from stillmotion.accounts.models import Account, ApiKey
from stillmotion.accounts.plans import PLANS
from stillmotion.client.webhooks import generate_secret
from stillmotion.db import utcnow

KEY_PREFIX = "sm_"
_BASE62 = string.digits + string.ascii_letters


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    """`sm_` + 40 random base62 characters (~238 bits)."""
    return KEY_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(40))


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account and the key's role."""

    account_id: str
    key_id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def get_or_create_account(
    *, session: Session, name: str, plan: str | None = None
) -> tuple[Account, bool]:
    account = session.scalar(select(Account).where(Account.name == name))
    if account is not None:
        if plan is not None and plan != account.plan:
            account.plan = _check_plan(plan)
        return account, False
    account = Account(
        name=name,
        plan=_check_plan(plan or "free"),
        credit_balance=0,
        webhook_secret=generate_secret(),
    )
    session.add(account)
    session.flush()
    return account, True


def _check_plan(plan: str) -> str:
    if plan not in PLANS:
        raise errors.ValidationFailed(
            f"unknown plan {plan!r}; known: {', '.join(PLANS)}", field="plan"
        )
    return plan


def create_key(*, session: Session, account: Account, admin: bool = False) -> tuple[ApiKey, str]:
    """A new key for `account`. The full key is returned once and never stored."""
    key = generate_key()
    row = ApiKey(
        account_id=account.id,
        prefix=key[:8],
        key_hash=hash_key(key),
        role="admin" if admin else "user",
    )
    session.add(row)
    session.flush()
    return row, key


def authenticate(*, session: Session, key: str | None) -> Principal:
    """The principal for `key`, or `Unauthenticated`. Revoked keys are wrong keys."""
    if not key or not key.startswith(KEY_PREFIX) or len(key) > 100:
        raise errors.Unauthenticated()
    digest = hash_key(key)
    row = session.execute(
        select(ApiKey.id, ApiKey.account_id, ApiKey.role, ApiKey.key_hash).where(
            ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
        )
    ).first()
    # The lookup is by hash (an index seek on a value the caller cannot steer); the
    # constant-time compare guards the last step anyway.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise errors.Unauthenticated()
    return Principal(account_id=row.account_id, key_id=row.id, role=row.role)


def list_keys(*, session: Session, account_name: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).join(Account).order_by(ApiKey.created_at)
    if account_name:
        query = query.where(Account.name == account_name)
    return list(session.scalars(query))


def revoke_key(*, session: Session, key_id_or_prefix: str) -> ApiKey:
    rows = session.scalars(
        select(ApiKey).where((ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix))
    ).all()
    if not rows:
        raise errors.NotFound(f"no key {key_id_or_prefix!r}")
    if len(rows) > 1:
        raise errors.Conflict(f"{key_id_or_prefix!r} matches {len(rows)} keys; use the key id")
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def get_account(*, session: Session, account_id: str) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise errors.NotFound("no such account")
    return account
