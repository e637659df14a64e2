"""Records, private fields, the anchoring outbox and batches.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

HASH = sa.String(66)
SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("record_id", HASH, primary_key=True),
        sa.Column("record_type", sa.String(100), nullable=False),
        sa.Column("observed_at_us", sa.BigInteger, nullable=False),
        sa.Column("stored_at_us", sa.BigInteger, nullable=False),
        sa.Column("public_json", sa.Text, nullable=False),
        sa.Column("private_commitment", HASH, nullable=True),
        sa.Column("content_hash", HASH, nullable=False),
        sqlite_with_rowid=False,  # clustered on record_id: the key is stored once, not twice
    )
    op.create_table(
        "private_fields",
        sa.Column(
            "record_id",
            HASH,
            sa.ForeignKey("records.record_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("salt", sa.LargeBinary(32), nullable=False),
        sa.Column("values_json", sa.Text, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "anchor_outbox",
        sa.Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
        sa.Column("record_id", HASH, nullable=False, unique=True),
        sa.Column("batch_id", HASH, nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name != "sqlite":
        # The queue, rows not yet in a batch. PostgreSQL assigns seq at insert, so a transaction
        # can commit after a later seq was batched; a partial index finds such a row, a seq
        # watermark would skip it. SQLite serialises writers (seq order is commit order), so it
        # scans from the last batched seq instead and saves an index write per record.
        op.create_index(
            "ix_anchor_outbox_queue",
            "anchor_outbox",
            ["seq"],
            postgresql_where=sa.text("batch_id IS NULL"),
        )
    op.create_table(
        "anchor_batches",
        sa.Column("batch_id", HASH, primary_key=True),
        sa.Column("seq_from", sa.BigInteger, nullable=False),
        sa.Column("seq_to", sa.BigInteger, nullable=False),
        sa.Column("leaf_count", sa.Integer, nullable=False),
        sa.Column("root", HASH, nullable=False),
        sa.Column("manifest_hash", HASH, nullable=False),
        sa.Column("manifest_blob", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("closed_at_us", sa.BigInteger, nullable=False),
        sa.Column("tx_hash", HASH, nullable=True),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("chain_id", sa.BigInteger, nullable=True),
        sa.Column("contract", sa.String(42), nullable=True),
        sa.Column("oracle", sa.String(42), nullable=True),
        sa.Column("anchored_at_us", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_anchor_batches_status", "anchor_batches", ["status"])


def downgrade() -> None:
    op.drop_table("anchor_batches")
    op.drop_table("anchor_outbox")
    op.drop_table("private_fields")
    op.drop_table("records")
