"""Closed loop: contract-event checkpoints and handled events, the action outbox, tasks, rule
state.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

HASH = sa.String(66)
SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_checkpoints",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", HASH, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "event_blocks",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("block_number", sa.BigInteger, primary_key=True),
        sa.Column("block_hash", HASH, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "handled_events",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_key", sa.String(200), primary_key=True),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", HASH, nullable=False),
        sa.Column("tx_hash", HASH, nullable=False),
        sa.Column("log_index", sa.Integer, nullable=False),
        sa.Column("handled_at_us", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "control_actions",
        sa.Column("id", SEQUENCE, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("payload_json", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at_us", sa.BigInteger, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("result_json", sa.Text, nullable=True),
    )
    op.create_index("ix_control_actions_due", "control_actions", ["status", "next_attempt_at_us"])
    op.create_table(
        "tasks",
        sa.Column("id", SEQUENCE, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("assignee", sa.String(200), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("detail_json", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at_us", sa.BigInteger, nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("closed_at_us", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_tasks_assignee_status", "tasks", ["assignee", "status"])
    op.create_table(
        "rule_state",
        sa.Column("rule_id", sa.String(100), primary_key=True),
        sa.Column("scope", sa.String(300), primary_key=True),
        sa.Column("state_json", sa.Text, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("rule_state")
    op.drop_index("ix_tasks_assignee_status", "tasks")
    op.drop_table("tasks")
    op.drop_index("ix_control_actions_due", "control_actions")
    op.drop_table("control_actions")
    op.drop_table("handled_events")
    op.drop_table("event_blocks")
    op.drop_table("event_checkpoints")
