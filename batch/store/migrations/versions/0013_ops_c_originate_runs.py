"""`runs.kind` may be `originate`: `achbatch originate` run by itself for a business date earlier
than the latest already worked, allowed by `--allow-earlier-date`, records that override in the
run ledger as a `runs` row of its own (kind 'originate', its summary naming both dates), as a
nightly run records it in its summary.

Only the CHECK changes. SQLite cannot ALTER a CHECK, and `runs` is referred to by `run_steps` and
`run_locks`: the table is rebuilt by hand from its own stored SQL with the new CHECK, foreign keys
checked at the commit (as 0007_money_rules rebuilds `coverage_flags`). Downgrading deletes the
`originate` rows (their override stays visible in the files they built) and restores the CHECK.

Revision ID: 0013_ops_c_originate_runs
Revises: 0012_bai2_statements
Create Date: 2026-12-04
"""
from __future__ import annotations

from alembic import op

revision = "0013_ops_c_originate_runs"
down_revision = "0012_bai2_statements"
branch_labels = None
depends_on = None

# Frozen copies of the value sets at this revision.
RUN_KINDS_OLD = ("nightly", "returns")
RUN_KINDS = ("nightly", "returns", "originate")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _set_run_kinds(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_runs_kind"), "runs", type_="check")
        op.create_check_constraint(op.f("ck_runs_kind"), "runs", _in("kind", new))
        return
    conn = op.get_bind()
    table_sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'").scalar_one()
    index_sql = [r[0] for r in conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs' AND sql IS NOT NULL")]
    old_check, new_check = _in("kind", old), _in("kind", new)
    if old_check not in table_sql:
        raise RuntimeError(f"runs does not carry the expected CHECK ({old_check}): {table_sql}")
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute("CREATE TABLE _old_runs AS SELECT * FROM runs")
    op.execute("DROP TABLE runs")
    op.execute(table_sql.replace(old_check, new_check))
    for sql in index_sql:
        op.execute(sql)
    op.execute("INSERT INTO runs SELECT * FROM _old_runs")
    op.execute("DROP TABLE _old_runs")


def upgrade() -> None:
    _set_run_kinds(RUN_KINDS_OLD, RUN_KINDS)


def downgrade() -> None:
    op.execute("UPDATE run_locks SET run_id = NULL WHERE run_id IN (SELECT id FROM runs WHERE kind = 'originate')")
    op.execute("DELETE FROM run_steps WHERE run_id IN (SELECT id FROM runs WHERE kind = 'originate')")
    op.execute("DELETE FROM runs WHERE kind = 'originate'")
    _set_run_kinds(RUN_KINDS, RUN_KINDS_OLD)
