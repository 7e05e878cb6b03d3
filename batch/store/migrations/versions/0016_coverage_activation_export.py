"""Coverage activation and the export of coverage changes to the enrollment system.

- `coverage_flags.status` may be `pending_activation`: the binder is not due yet, or paid and its
  payment has not cleared (coverage is activated when it clears).
- `coverage_exports`: one row per export of coverage standing changes (business date, file, its
  sha256, row count, rows new to the enrollment system, the highest flag id looked at).
- `coverage_export_items`: which flag row went in which export as what change; a flag row is
  exported as new at most once (`ux_coverage_export_items_first`, partial: re-exports may repeat).
- `ix_coverage_flags_assessed_on`: `coverage export --since DATE` finds the changes of a date.

SQLite cannot ALTER a CHECK: `coverage_flags` is rebuilt by hand as 0007 rebuilt it (the rows
copied aside, the table created again from its own stored SQL with the new CHECK, its indexes
again, the rows put back, the checks of foreign keys deferred to the commit).

Downgrading drops the export tables and turns `pending_activation` flags into `ok` (the status
they had before this revision).

Revision ID: 0016_coverage_activation_export
Revises: 0015_prenote_notices
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_coverage_activation_export"
down_revision = "0015_prenote_notices"
branch_labels = None
depends_on = None

# Frozen copies of the value sets at this revision.
COVERAGE_STATUSES_OLD = ("ok", "at_risk", "not_started", "past_due", "termination_pending", "terminated")
COVERAGE_STATUSES = ("ok", "pending_activation", "at_risk", "not_started", "past_due", "termination_pending",
                     "terminated")
CHANGES = ("activated", "at_risk", "not_started", "terminated", "reinstated")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _set_coverage_statuses(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_coverage_flags_status"), "coverage_flags", type_="check")
        op.create_check_constraint(op.f("ck_coverage_flags_status"), "coverage_flags", _in("status", new))
        return
    conn = op.get_bind()
    table_sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'coverage_flags'").scalar_one()
    index_sql = [r[0] for r in conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'coverage_flags' AND sql IS NOT NULL")]
    old_check, new_check = _in("status", old), _in("status", new)
    if old_check not in table_sql:
        raise RuntimeError(f"coverage_flags does not carry the expected CHECK ({old_check}): {table_sql}")
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute("CREATE TABLE _old_coverage_flags AS SELECT * FROM coverage_flags")
    op.execute("DROP TABLE coverage_flags")
    op.execute(table_sql.replace(old_check, new_check))
    for sql in index_sql:
        op.execute(sql)
    op.execute("INSERT INTO coverage_flags SELECT * FROM _old_coverage_flags")
    op.execute("DROP TABLE _old_coverage_flags")


def upgrade() -> None:
    _set_coverage_statuses(COVERAGE_STATUSES_OLD, COVERAGE_STATUSES)
    op.create_index("ix_coverage_flags_assessed_on", "coverage_flags", ["assessed_on"])
    op.create_table(
        "coverage_exports",
        sa.Column("id", _id(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("since_date", sa.Date(), nullable=True),
        sa.Column("since_run_id", _id(), nullable=True),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("new_count", sa.Integer(), nullable=False),
        sa.Column("through_flag_id", _id(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_coverage_exports"),
        sa.ForeignKeyConstraint(["since_run_id"], ["runs.id"], name="fk_coverage_exports_since_run_id_runs"),
        sa.CheckConstraint("row_count >= 0 AND new_count >= 0 AND new_count <= row_count",
                           name=op.f("ck_coverage_exports_counts")),
    )
    op.create_table(
        "coverage_export_items",
        sa.Column("id", _id(), nullable=False),
        sa.Column("export_id", _id(), nullable=False),
        sa.Column("flag_id", _id(), nullable=False),
        sa.Column("change", sa.String(12), nullable=False),
        sa.Column("reexport", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_coverage_export_items"),
        sa.ForeignKeyConstraint(["export_id"], ["coverage_exports.id"],
                                name="fk_coverage_export_items_export_id_coverage_exports"),
        sa.ForeignKeyConstraint(["flag_id"], ["coverage_flags.id"],
                                name="fk_coverage_export_items_flag_id_coverage_flags"),
        sa.CheckConstraint(_in("change", CHANGES), name=op.f("ck_coverage_export_items_change")),
    )
    op.create_index("ix_coverage_export_items_export_id", "coverage_export_items", ["export_id"])
    op.create_index("ix_coverage_export_items_flag_id", "coverage_export_items", ["flag_id"])
    op.create_index("ux_coverage_export_items_first", "coverage_export_items", ["flag_id"], unique=True,
                    postgresql_where=sa.text("NOT reexport"), sqlite_where=sa.text("NOT reexport"))


def downgrade() -> None:
    op.drop_index("ux_coverage_export_items_first", table_name="coverage_export_items")
    op.drop_index("ix_coverage_export_items_flag_id", table_name="coverage_export_items")
    op.drop_index("ix_coverage_export_items_export_id", table_name="coverage_export_items")
    op.drop_table("coverage_export_items")
    op.drop_table("coverage_exports")
    op.drop_index("ix_coverage_flags_assessed_on", table_name="coverage_flags")
    op.execute("UPDATE coverage_flags SET status = 'ok' WHERE status = 'pending_activation'")
    _set_coverage_statuses(COVERAGE_STATUSES, COVERAGE_STATUSES_OLD)
