"""Nightly run ledger and lock holder: one `runs` row per run of the nightly pipeline (or the
morning returns poll), one `run_steps` row per step (status, start, end, counts, error;
`done_key` unique so a step is recorded done once per business date), and `run_locks`, which
describes who holds the run lock (the lock itself is a PostgreSQL advisory lock or an flock).

Revision ID: 0004_runs
Revises: 0003_returns
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_runs"
down_revision = "0003_returns"
branch_labels = None
depends_on = None

# Frozen copies of the value sets at this revision (batch/store/models.py may grow later).
RUN_KINDS = ("nightly", "returns")
RUN_STATUSES = ("running", "done", "problems", "failed", "tempfail", "interrupted", "crashed")
STEP_STATUSES = ("running", "done", "skipped", "failed", "tempfail", "unavailable", "not_run", "crashed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(nullable: bool = False) -> dict:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", _id(), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("exit_code", sa.SmallInteger(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", **_ts()),
        sa.Column("finished_at", **_ts(True)),
        sa.Column("summary", sa.String(1000), nullable=True),
        sa.Column("counts", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.CheckConstraint(_in("kind", RUN_KINDS), name=op.f("ck_runs_kind")),
        sa.CheckConstraint(_in("status", RUN_STATUSES), name=op.f("ck_runs_status")),
    )
    op.create_index("ix_runs_kind_business_date", "runs", ["kind", "business_date"])
    op.create_index("ix_runs_status", "runs", ["status"])

    op.create_table(
        "run_steps",
        sa.Column("id", _id(), nullable=False),
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("step", sa.String(24), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("started_at", **_ts()),
        sa.Column("finished_at", **_ts(True)),
        sa.Column("counts", sa.Text(), nullable=True),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("done_key", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_run_steps"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_steps_run_id_runs"),
        sa.UniqueConstraint("run_id", "step", name="uq_run_steps_run_id_step"),
        sa.UniqueConstraint("done_key", name="uq_run_steps_done_key"),
        sa.CheckConstraint(_in("status", STEP_STATUSES), name=op.f("ck_run_steps_status")),
        sa.CheckConstraint("done_key IS NULL OR status = 'done'", name=op.f("ck_run_steps_done_key")),
    )
    op.create_index("ix_run_steps_kind_business_date_step", "run_steps", ["kind", "business_date", "step"])

    op.create_table(
        "run_locks",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("run_id", _id(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("since", **_ts()),
        sa.Column("heartbeat_at", **_ts()),
        sa.Column("released_at", **_ts(True)),
        sa.PrimaryKeyConstraint("name", name="pk_run_locks"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_locks_run_id_runs"),
    )


def downgrade() -> None:
    op.drop_table("run_locks")
    op.drop_index("ix_run_steps_kind_business_date_step", table_name="run_steps")
    op.drop_table("run_steps")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_kind_business_date", table_name="runs")
    op.drop_table("runs")
