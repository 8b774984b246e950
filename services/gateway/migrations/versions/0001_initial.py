"""Initial schema: runs, steps, step_metrics, tasks, weight_versions.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("current_step", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("timings", sa.JSON, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.UniqueConstraint("run_id", "step", name="uq_steps_run_step"),
    )
    op.create_index("ix_steps_run_id", "steps", ["run_id"])
    op.create_table(
        "step_metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("task_type", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("n", sa.Integer, nullable=True),
        sa.Column("valid_rate", sa.Float, nullable=True),
        sa.Column("solve_rate", sa.Float, nullable=True),
        sa.Column("learnability", sa.Float, nullable=True),
        sa.Column("reward_mean", sa.Float, nullable=True),
        sa.Column("format_error_rate", sa.Float, nullable=True),
        sa.Column("tokens", sa.BigInteger, nullable=True),
        sa.Column("staleness", sa.Float, nullable=True),
        sa.Column("extra", sa.JSON, nullable=False),
        sa.UniqueConstraint("run_id", "step", "task_type", "role", name="uq_step_metrics_group"),
    )
    op.create_index("ix_step_metrics_run_id", "step_metrics", ["run_id"])
    op.create_table(
        "tasks",
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
        sa.Column("program_hash", sa.String(64), nullable=False),
        sa.Column("program_chars", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("proposer_weight_version", sa.Integer, nullable=True),
        sa.Column("validation", sa.JSON, nullable=False),
        sa.Column("solve_rate", sa.Float, nullable=True),
        sa.Column("n_solves", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("run_id", "task_type", "fingerprint", name="uq_tasks_fingerprint"),
    )
    op.create_index("ix_tasks_run_id", "tasks", ["run_id"])
    op.create_index("ix_tasks_buffer", "tasks", ["run_id", "task_type", "status", "step"])
    op.create_index("ix_tasks_family", "tasks", ["run_id", "task_type", "program_hash"])
    op.create_table(
        "weight_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("checksum", sa.String(128), nullable=False),
        sa.Column(
            "run_id",
            sa.Integer,
            sa.ForeignKey("runs.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("batch_id", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("loaded_at", TS, nullable=True),
    )
    op.create_index("ix_weight_versions_run_id", "weight_versions", ["run_id"])


def downgrade() -> None:
    op.drop_table("weight_versions")
    op.drop_table("tasks")
    op.drop_table("step_metrics")
    op.drop_table("steps")
    op.drop_table("runs")
