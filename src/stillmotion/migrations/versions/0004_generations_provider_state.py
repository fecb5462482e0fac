"""generations keep their provider's checkpoint; longer stage names

`provider_state` holds what a remote provider checkpointed for a job (Runway: the upstream
task's id), so an attempt after a crash or a re-claim resumes the same upstream task instead
of creating another. `stage` widens to 24 characters for the Runway provider's stages
(`throttled_upstream` is 18).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_state", sa.JSON(), nullable=True))
        batch_op.alter_column(
            "stage",
            existing_type=sa.String(length=16),
            type_=sa.String(length=24),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.alter_column(
            "stage",
            existing_type=sa.String(length=24),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
        batch_op.drop_column("provider_state")
