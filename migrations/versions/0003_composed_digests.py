"""digests composed once (shared by their channels), a durable queue of single mails

Revision ID: 0003
Revises: 0002

A digest's papers move from each delivery (`delivery_items`) to the day's digest
(`digests` + `digest_items`), which every channel and every retry sends as it is. The delivery's
`cutoff` becomes the digest's `until`. Single mails (confirmation, goodbye) get the `mails`
queue. Existing rows are carried over: each (reader, day) that recorded papers keeps them.

Create Date: 2026-12-01 15:40:00
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("digest_date", sa.Date(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("empty", sa.Boolean(), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.Column("failed_sources", sa.JSON(), nullable=False),
        sa.Column("composed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_digests_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digests")),
        sa.UniqueConstraint("subscriber_id", "digest_date", name="uq_digests_unit"),
    )
    op.create_table(
        "digest_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("section", sa.String(length=10), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("matched", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["digests.id"],
            name=op.f("fk_digest_items_digest_id_digests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["paper_id"],
            ["papers.id"],
            name=op.f("fk_digest_items_paper_id_papers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_items")),
        sa.UniqueConstraint("digest_id", "paper_id", name="uq_digest_items_pair"),
    )
    with op.batch_alter_table("digest_items") as batch_op:
        batch_op.create_index(batch_op.f("ix_digest_items_digest_id"), ["digest_id"])
        batch_op.create_index(batch_op.f("ix_digest_items_paper_id"), ["paper_id"])
    op.create_table(
        "mails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_mails_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mails")),
    )
    with op.batch_alter_table("mails") as batch_op:
        batch_op.create_index("ix_mails_status_id", ["status", "id"])
    _carry_over_items()
    op.drop_table("delivery_items")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("cutoff")


def _carry_over_items() -> None:
    """Each (reader, day) whose deliveries were composed becomes a digest with those papers."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT d.id, d.subscriber_id, d.digest_date, d.channel, d.status, d.cutoff, "
            "d.created_at FROM deliveries d ORDER BY d.id"
        )
    ).all()
    items: dict[int, list[tuple[int, int, float, object]]] = {}
    for delivery_id, paper_id, rank, score, matched in connection.execute(
        sa.text("SELECT delivery_id, paper_id, rank, score, matched FROM delivery_items")
    ):
        items.setdefault(delivery_id, []).append((paper_id, rank, score, matched))
    units: dict[tuple[int, object], list[tuple[object, ...]]] = {}
    for row in rows:
        units.setdefault((row[1], row[2]), []).append(tuple(row))
    digests = sa.table(
        "digests",
        sa.column("id", sa.Integer),
        sa.column("subscriber_id", sa.Integer),
        sa.column("digest_date", sa.Date),
        sa.column("since", sa.DateTime),
        sa.column("until", sa.DateTime),
        sa.column("empty", sa.Boolean),
        sa.column("fallback", sa.Boolean),
        sa.column("failed_sources", sa.JSON),
        sa.column("composed_at", sa.DateTime),
    )
    digest_items = sa.table(
        "digest_items",
        sa.column("digest_id", sa.Integer),
        sa.column("paper_id", sa.Integer),
        sa.column("section", sa.String),
        sa.column("rank", sa.Integer),
        sa.column("score", sa.Float),
        sa.column("matched", sa.JSON),
    )
    for (subscriber_id, digest_date), deliveries in units.items():
        # The email copy first: it is what the reader read; the feed copy when there is none.
        ordered = sorted(deliveries, key=lambda d: d[3] != "email")
        recorded = next((items[d[0]] for d in ordered if d[0] in items), None)
        done = any(d[4] in ("sent", "empty", "failed") for d in deliveries)
        if recorded is None and not done:
            continue  # never composed: it will be, when it is next claimed
        until = max(_as_datetime(d[5]) for d in deliveries)
        result = connection.execute(
            digests.insert()
            .values(
                subscriber_id=subscriber_id,
                digest_date=digest_date,
                since=until,
                until=until,
                empty=not recorded,
                fallback=False,
                failed_sources=[],
                composed_at=until,
            )
            .returning(digests.c.id)
        )
        digest_id = result.scalar_one()
        if recorded:
            connection.execute(
                digest_items.insert(),
                [
                    {
                        "digest_id": digest_id,
                        "paper_id": paper_id,
                        "section": "match",
                        "rank": rank,
                        "score": score,
                        "matched": matched if not isinstance(matched, str) else _json(matched),
                    }
                    for paper_id, rank, score, matched in sorted(recorded, key=lambda i: i[1])
                ],
            )


def _as_datetime(value: object) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value  # type: ignore[return-value]


def _json(value: str) -> object:
    import json

    return json.loads(value)


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("cutoff", sa.DateTime(), nullable=True))
    op.execute("UPDATE deliveries SET cutoff = created_at")
    op.create_table(
        "delivery_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("matched", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_items_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["paper_id"],
            ["papers.id"],
            name=op.f("fk_delivery_items_paper_id_papers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_items")),
        sa.UniqueConstraint("delivery_id", "paper_id", name="uq_delivery_items_pair"),
    )
    op.execute(
        "INSERT INTO delivery_items (delivery_id, paper_id, rank, score, matched) "
        "SELECT d.id, i.paper_id, i.rank, i.score, i.matched FROM deliveries d "
        "JOIN digests g ON g.subscriber_id = d.subscriber_id AND g.digest_date = d.digest_date "
        "JOIN digest_items i ON i.digest_id = g.id WHERE i.section = 'match'"
    )
    op.drop_table("mails")
    op.drop_table("digest_items")
    op.drop_table("digests")
