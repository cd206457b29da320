"""digest_items.partial: the paper matched only part of a multi-word interest

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("digest_items") as batch_op:
        batch_op.add_column(
            sa.Column("partial", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("digest_items") as batch_op:
        batch_op.drop_column("partial")
