"""an index for an account's unfinished jobs

The "throttled" stage (and the claim's per-account step) look for one account's running and
queued jobs. With only (account_id, created_at) and (status, stage, created_at) to go by, that
meant walking the account's whole history or the whole queue; this index reaches exactly the
account's jobs in a given status and stage, oldest first.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 04:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_generations_account_active",
            ["account_id", "status", "stage", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.drop_index("ix_generations_account_active")
