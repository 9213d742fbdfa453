"""The initial schema: the chain (records, chain_head), pass checkpoints, append-only triggers.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pendriver.logbook.migrations.triggers import create_triggers, drop_triggers

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ref_seq", sa.Integer, nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index("ix_records_kind", "records", ["kind"])
    op.create_index("ix_records_ref_seq", "records", ["ref_seq"])
    head = op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    op.create_table(
        "pass_progress",
        sa.Column("pass_id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(200), nullable=False, index=True),
        sa.Column("cartridge_id", sa.String(200), nullable=False, index=True),
        sa.Column("owner", sa.String(300), nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("figures", sa.Text, nullable=True),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    create_triggers()


def downgrade() -> None:
    drop_triggers()
    op.drop_table("pass_progress")
    op.drop_table("chain_head")
    op.drop_table("records")
