"""subscribers.link_secret (revocable links) and subscribers.pending_profile (sign-ups kept apart)

Revision ID: 0004
Revises: 0003

Each reader's preferences, unsubscribe and confirmation links carry their random link secret;
changing it signs every old link out. Readers who exist before this migration keep an empty
secret, so the links already in their inboxes go on working until they are rotated. A sign-up
for an address that is pending or unsubscribed waits in pending_profile until it is confirmed.

Create Date: 2026-12-01 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.add_column(
            sa.Column("link_secret", sa.String(length=32), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("pending_profile", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_column("pending_profile")
        batch_op.drop_column("link_secret")
