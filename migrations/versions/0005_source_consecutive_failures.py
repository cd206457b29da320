"""sources.consecutive_failures: failed fetches in a row, for alerts (`[fetch] alert_after`)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch_op:
        batch_op.add_column(
            sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0")
        )
    # a source whose last fetch failed has failed at least once in a row
    op.execute("UPDATE sources SET consecutive_failures = 1 WHERE last_status = 'failed'")


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch_op:
        batch_op.drop_column("consecutive_failures")
