"""papers.affiliations: each author's affiliation, where the feed named one

Revision ID: 0006
Revises: 0005

arXiv's listing writes "Name (Affiliation, City), ..." and its API <arxiv:affiliation>; kept apart from the
name, one entry per author ("" where none). Papers stored before have none.

Create Date: 2026-12-01 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("papers") as batch_op:
        batch_op.add_column(sa.Column("affiliations", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("papers") as batch_op:
        batch_op.drop_column("affiliations")
