"""digests.matched_total: how many papers matched the profile when the digest was composed

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: digests composed before this revision did not record it (they show their size)
    with op.batch_alter_table("digests") as batch_op:
        batch_op.add_column(sa.Column("matched_total", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("digests") as batch_op:
        batch_op.drop_column("matched_total")
