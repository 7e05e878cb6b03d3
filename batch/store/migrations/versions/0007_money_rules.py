"""Money rules: review items not tied to a return file, the `at_risk` coverage status, at most one
open re-presentment per payment, and NOC history found by the old account's keyed hash.

- `review_items` gains `subject` ('file': an entry of a bank file, as every existing item is;
  'payment', 'statement_line', 'remote_name'), `subject_ref` (what the subject is when it is not a
  row of ours: a remote name, a statement line), `related_payment_id` (the second payment of a
  `double_collection` item) and `dedupe_key` (unique: an item opened by a re-run is not opened
  twice). `return_file_id`, `line`, `code`, `original_trace_number` and `trace_number` become
  optional; an item of subject 'file' must still name its file and line. Existing items stay
  exactly as they are (subject 'file').
- `coverage_flags.status` may be `at_risk`: a premium whose payment was returned, with no
  replacement cleared yet, before any delinquency status applies.
- `ux_payments_open_retry`: a unique partial index on `payments.retry_of_id` over the
  re-presentments still open (pending, in a file, sent): two open re-presentments of one payment
  cannot coexist, whatever the application does.
- `ix_account_changes_old_account_hash`: imports find an account a NOC corrected by the hash of
  the number it had before.

SQLite cannot ALTER a column's nullability or a CHECK: `review_items` (referred to by nothing) is
rebuilt in Alembic's batch mode. `coverage_flags` is referred to by `notices`, and with foreign
keys on, batch mode's order (fill the new table, drop the old, rename) leaves SQLite counting the
dropped rows' references as violations at the commit. So it is rebuilt by hand with the checks
deferred to the commit: copy the rows aside, drop the table, create it again from its own stored
SQL with the new CHECK, and put the rows back (each row put back answers its references).

Revision ID: 0007_money_rules
Revises: 0006_file_contents
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_money_rules"
down_revision = "0006_file_contents"
branch_labels = None
depends_on = None

# Frozen copies of the value sets at this revision.
COVERAGE_STATUSES_OLD = ("ok", "not_started", "past_due", "termination_pending", "terminated")
COVERAGE_STATUSES = ("ok", "at_risk", "not_started", "past_due", "termination_pending", "terminated")
REVIEW_SUBJECTS = ("file", "payment", "statement_line", "remote_name")
OPEN_RETRY = "retry_of_id IS NOT NULL AND state IN ('pending', 'in_file', 'sent')"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _where(clause: str) -> dict:
    return {"postgresql_where": sa.text(clause), "sqlite_where": sa.text(clause)}


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
    with op.batch_alter_table("review_items") as b:
        b.add_column(sa.Column("subject", sa.String(16), nullable=False, server_default="file"))
        b.add_column(sa.Column("subject_ref", sa.String(300), nullable=True))
        b.add_column(sa.Column("related_payment_id", _id(), nullable=True))
        b.add_column(sa.Column("dedupe_key", sa.String(120), nullable=True))
        for name, type_ in (("return_file_id", _id()), ("line", sa.Integer()), ("code", sa.String(3)),
                            ("original_trace_number", sa.String(15)), ("trace_number", sa.String(15))):
            b.alter_column(name, existing_type=type_, nullable=True)
        b.create_foreign_key(op.f("fk_review_items_related_payment_id_payments"), "payments",
                             ["related_payment_id"], ["id"])
        b.create_unique_constraint(op.f("uq_review_items_dedupe_key"), ["dedupe_key"])
        b.create_check_constraint(op.f("ck_review_items_subject"), _in("subject", REVIEW_SUBJECTS))
        b.create_check_constraint(
            op.f("ck_review_items_file_line"), "subject <> 'file' OR (return_file_id IS NOT NULL AND line IS NOT NULL)")
    with op.batch_alter_table("review_items") as b:
        b.alter_column("subject", existing_type=sa.String(16), server_default=None)
    op.create_index("ix_review_items_payment_id", "review_items", ["payment_id"])
    _set_coverage_statuses(COVERAGE_STATUSES_OLD, COVERAGE_STATUSES)
    op.create_index("ux_payments_open_retry", "payments", ["retry_of_id"], unique=True, **_where(OPEN_RETRY))
    op.create_index("ix_account_changes_old_account_hash", "account_changes", ["old_account_hash"])


def downgrade() -> None:
    op.drop_index("ix_account_changes_old_account_hash", table_name="account_changes")
    op.drop_index("ux_payments_open_retry", table_name="payments")
    op.execute("UPDATE coverage_flags SET status = 'past_due' WHERE status = 'at_risk'")
    _set_coverage_statuses(COVERAGE_STATUSES, COVERAGE_STATUSES_OLD)
    op.drop_index("ix_review_items_payment_id", table_name="review_items")
    # Items with no file cannot be kept by the older schema.
    op.execute("DELETE FROM review_items WHERE subject <> 'file'")
    with op.batch_alter_table("review_items") as b:
        b.drop_constraint(op.f("ck_review_items_file_line"), type_="check")
        b.drop_constraint(op.f("ck_review_items_subject"), type_="check")
        b.drop_constraint(op.f("uq_review_items_dedupe_key"), type_="unique")
        b.drop_constraint(op.f("fk_review_items_related_payment_id_payments"), type_="foreignkey")
        for name, type_ in (("return_file_id", _id()), ("line", sa.Integer()), ("code", sa.String(3)),
                            ("original_trace_number", sa.String(15)), ("trace_number", sa.String(15))):
            b.alter_column(name, existing_type=type_, nullable=False)
        b.drop_column("dedupe_key")
        b.drop_column("related_payment_id")
        b.drop_column("subject_ref")
        b.drop_column("subject")
