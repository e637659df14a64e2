"""The trace index: what a trace looks up, by key and time (see node/trace/index.py).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trace_index",
        sa.Column("key", sa.String(520), primary_key=True),
        sa.Column("observed_at_us", sa.BigInteger, primary_key=True),
        sa.Column("ref", sa.String(80), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "trace_index_state",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trace_index_state")
    op.drop_table("trace_index")
