"""Leaner payment indexes for the nightly bulk updates.

Origination moves every originated payment from `pending` to `in_file` in one UPDATE; on
PostgreSQL each updated row writes a new entry in every index of the table. Three indexes only ever
serve a subset of rows, so they become partial and the bulk update skips them:
- `ix_payments_pending` (originate_on, state = 'pending' only) replaces (state, originate_on): the
  only queries that filter on state by index are "the pending payments due by a date";
- `ix_payments_premium_id` and `ix_payments_retry_of_id` keep only rows where the column is set
  (most payments have neither a premium link nor a retry origin).
Measured with benchmarks/bench_origination.py (see the issue notes).

Revision ID: 0005_payment_indexes
Revises: 0004_runs
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_payment_indexes"
down_revision = "0004_runs"
branch_labels = None
depends_on = None


def _where(clause: str) -> dict:
    return {"postgresql_where": sa.text(clause), "sqlite_where": sa.text(clause)}


def upgrade() -> None:
    op.drop_index("ix_payments_state_originate_on", table_name="payments")
    op.create_index("ix_payments_pending", "payments", ["originate_on"], **_where("state = 'pending'"))
    op.drop_index("ix_payments_premium_id", table_name="payments")
    op.create_index("ix_payments_premium_id", "payments", ["premium_id"], **_where("premium_id IS NOT NULL"))
    op.drop_index("ix_payments_retry_of_id", table_name="payments")
    op.create_index("ix_payments_retry_of_id", "payments", ["retry_of_id"], **_where("retry_of_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_payments_retry_of_id", table_name="payments")
    op.create_index("ix_payments_retry_of_id", "payments", ["retry_of_id"])
    op.drop_index("ix_payments_premium_id", table_name="payments")
    op.create_index("ix_payments_premium_id", "payments", ["premium_id"])
    op.drop_index("ix_payments_pending", table_name="payments")
    op.create_index("ix_payments_state_originate_on", "payments", ["state", "originate_on"])
