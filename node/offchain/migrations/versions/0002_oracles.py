"""Oracles: quarantine, per-device sequence high-water marks, genealogy links, attestations.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

HASH = sa.String(66)
SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("id", SEQUENCE, primary_key=True, autoincrement=True),
        sa.Column("received_at_us", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("device_id", sa.String(200), nullable=True),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_quarantine_reason", "quarantine", ["reason"])
    op.create_table(
        "device_sequences",
        sa.Column("device_id", sa.String(200), primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "genealogy_links",
        sa.Column("id", SEQUENCE, primary_key=True, autoincrement=True),
        sa.Column("record_id", HASH, nullable=False),
        sa.Column("output_id", sa.String(500), nullable=False),
        sa.Column("input_id", sa.String(500), nullable=False),
        sa.Column("input_kind", sa.String(40), nullable=False),
        sa.Column("observed_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_genealogy_output", "genealogy_links", ["output_id"])
    op.create_index("ix_genealogy_input", "genealogy_links", ["input_id"])
    op.create_table(
        "attestations",
        sa.Column("digest", HASH, primary_key=True),
        sa.Column("record_id", HASH, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("signer", sa.String(42), nullable=False),
        sa.Column("nonce", sa.BigInteger, nullable=False),
        sa.Column("bundle_json", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("tx_hash", HASH, nullable=True),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_attestations_record_id", "attestations", ["record_id"])
    op.create_index("ix_attestations_signer_nonce", "attestations", ["signer", "nonce"])


def downgrade() -> None:
    op.drop_index("ix_attestations_signer_nonce", "attestations")
    op.drop_index("ix_attestations_record_id", "attestations")
    op.drop_table("attestations")
    op.drop_index("ix_genealogy_input", "genealogy_links")
    op.drop_index("ix_genealogy_output", "genealogy_links")
    op.drop_table("genealogy_links")
    op.drop_table("device_sequences")
    op.drop_index("ix_quarantine_reason", "quarantine")
    op.drop_table("quarantine")
