"""The held-out in-distribution tasks of the seeding stage (never in a buffer).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heldout_tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("task_type", sa.String(16), nullable=False),
        sa.Column("program", sa.Text, nullable=False),
        sa.Column("imports", sa.JSON, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("program_key", sa.String(64), nullable=False),
        sa.Column("proposer_weight_version", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "task_type", "fingerprint", name="uq_heldout_fingerprint"),
    )
    op.create_index("ix_heldout_tasks_run_id", "heldout_tasks", ["run_id"])
    op.create_index("ix_heldout_program", "heldout_tasks", ["run_id", "program_key"])


def downgrade() -> None:
    op.drop_table("heldout_tasks")
