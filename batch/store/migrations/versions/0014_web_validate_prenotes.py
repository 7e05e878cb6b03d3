"""WEB debit account validation: prenotes, their own kind of file entry, and the `held` payment state.

- `prenotes`: one row per zero-dollar prenote of a bank account (states pending, in_file,
  validated, corrected, returned, cancelled: 10 characters at most, as PostgreSQL enforces).
- `file_entries.kind` ('payment', 'offset', 'prenote') and `file_entries.prenote_id` (unique): a
  prenote entry has no payment, and is no longer read as the offset entry. Existing rows: 'offset'
  where there is no payment, else 'payment'.
- `payments.state` may be `held`: a first-use WEB debit waiting for its account's validation.

SQLite cannot ALTER a CHECK: `payments` and `file_entries` (both referred to by other tables) are
rebuilt by hand as 0007 rebuilt `coverage_flags`: the checks of foreign keys deferred to the commit,
the rows copied aside, the table dropped and created again from its own stored SQL with the new
CHECK (and columns), its indexes created again, the rows put back.

Downgrading deletes the prenotes and their entries and puts held payments back to pending.

Revision ID: 0014_web_validate_prenotes
Revises: 0013_ops_c_originate_runs
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_web_validate_prenotes"
down_revision = "0013_ops_c_originate_runs"
branch_labels = None
depends_on = None

# Frozen copies of the value sets at this revision.
PAYMENT_STATES_OLD = ("pending", "in_file", "sent", "settled", "returned", "failed", "paid")
PAYMENT_STATES = ("pending", "held", "in_file", "sent", "settled", "returned", "failed", "paid")
PRENOTE_STATES = ("pending", "in_file", "validated", "corrected", "returned", "cancelled")
SEC_CODES = ("WEB", "PPD", "TEL")
PAYMENT_TYPE_CODES = ("S", "R", "")
KIND_CHECK = ("(kind = 'payment' AND payment_id IS NOT NULL AND prenote_id IS NULL)"
              " OR (kind = 'offset' AND payment_id IS NULL AND prenote_id IS NULL)"
              " OR (kind = 'prenote' AND payment_id IS NULL AND prenote_id IS NOT NULL AND amount_cents = 0)")
# What the SQLite rebuild adds to file_entries' stored CREATE TABLE (and removes on the way down):
# the columns before its first table constraint, the constraints at its end.
SQLITE_FIRST_CONSTRAINT = "CONSTRAINT pk_file_entries"
SQLITE_ENTRY_COLUMNS = "kind VARCHAR(8) NOT NULL, prenote_id INTEGER, "
SQLITE_ENTRY_CONSTRAINTS = (", CONSTRAINT fk_file_entries_prenote_id_prenotes FOREIGN KEY(prenote_id) REFERENCES prenotes (id),"
                            f" CONSTRAINT ck_file_entries_kind CHECK ({KIND_CHECK})")


def _add_entry_columns(sql: str) -> str:
    if SQLITE_FIRST_CONSTRAINT not in sql:
        return sql
    sql = sql.replace(SQLITE_FIRST_CONSTRAINT, SQLITE_ENTRY_COLUMNS + SQLITE_FIRST_CONSTRAINT, 1)
    return sql.rstrip().removesuffix(")") + SQLITE_ENTRY_CONSTRAINTS + "\n)"


def _drop_entry_columns(sql: str) -> str:
    return sql.replace(SQLITE_ENTRY_COLUMNS, "").replace(SQLITE_ENTRY_CONSTRAINTS, "")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _sqlite_rebuild(table: str, new_sql, columns_in: str, columns_out: str) -> None:
    """Rebuild `table` from its stored SQL as changed by `new_sql(sql)`, rows copied back as
    `INSERT INTO table (columns_in) SELECT columns_out FROM the copy`."""
    conn = op.get_bind()
    table_sql = conn.exec_driver_sql(
        f"SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '{table}'").scalar_one()
    index_sql = [r[0] for r in conn.exec_driver_sql(
        f"SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}' AND sql IS NOT NULL")]
    changed = new_sql(table_sql)
    if changed == table_sql:
        raise RuntimeError(f"{table} is not as this migration expects: {table_sql}")
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute(f"CREATE TABLE _old_{table} AS SELECT * FROM {table}")
    op.execute(f"DROP TABLE {table}")
    op.execute(changed)
    for sql in index_sql:
        op.execute(sql)
    op.execute(f"INSERT INTO {table} ({columns_in}) SELECT {columns_out} FROM _old_{table}")
    op.execute(f"DROP TABLE _old_{table}")


def _columns(table: str) -> list[str]:
    return [r[1] for r in op.get_bind().exec_driver_sql(f"PRAGMA table_info({table})")]


def _set_payment_states(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_payments_state"), "payments", type_="check")
        op.create_check_constraint(op.f("ck_payments_state"), "payments", _in("state", new))
        return
    cols = ", ".join(_columns("payments"))
    _sqlite_rebuild("payments", lambda sql: sql.replace(_in("state", old), _in("state", new)), cols, cols)


def upgrade() -> None:
    op.create_table(
        "prenotes",
        sa.Column("id", _id(), nullable=False),
        sa.Column("bank_account_id", _id(), nullable=False),
        sa.Column("member_id", sa.String(15), nullable=False),
        sa.Column("sec_code", sa.String(3), nullable=False),
        sa.Column("payment_type_code", sa.String(1), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("requested_on", sa.Date(), nullable=False),
        sa.Column("file_date", sa.Date(), nullable=True),
        sa.Column("settlement_date", sa.Date(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("resolved_on", sa.Date(), nullable=True),
        sa.Column("return_code", sa.String(3), nullable=True),
        sa.Column("return_reason", sa.String(200), nullable=True),
        sa.Column("return_file_id", _id(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prenotes"),
        sa.ForeignKeyConstraint(["bank_account_id"], ["bank_accounts.id"],
                                name="fk_prenotes_bank_account_id_bank_accounts"),
        sa.ForeignKeyConstraint(["return_file_id"], ["return_files.id"],
                                name="fk_prenotes_return_file_id_return_files"),
        sa.CheckConstraint(_in("state", PRENOTE_STATES), name=op.f("ck_prenotes_state")),
        sa.CheckConstraint(_in("sec_code", SEC_CODES), name=op.f("ck_prenotes_sec_code")),
        sa.CheckConstraint(_in("payment_type_code", PAYMENT_TYPE_CODES), name=op.f("ck_prenotes_payment_type_code")),
    )
    op.create_index("ix_prenotes_bank_account_id", "prenotes", ["bank_account_id"])
    op.create_index("ix_prenotes_state", "prenotes", ["state"])
    if op.get_bind().dialect.name == "sqlite":
        old = ", ".join(_columns("file_entries"))
        _sqlite_rebuild(
            "file_entries", _add_entry_columns,
            f"{old}, kind", f"{old}, CASE WHEN payment_id IS NULL THEN 'offset' ELSE 'payment' END")
    else:
        op.add_column("file_entries", sa.Column("kind", sa.String(8), nullable=True))
        op.add_column("file_entries", sa.Column("prenote_id", _id(), nullable=True))
        op.execute("UPDATE file_entries SET kind = CASE WHEN payment_id IS NULL THEN 'offset' ELSE 'payment' END")
        op.alter_column("file_entries", "kind", nullable=False)
        op.create_foreign_key("fk_file_entries_prenote_id_prenotes", "file_entries", "prenotes", ["prenote_id"], ["id"])
        op.create_check_constraint(op.f("ck_file_entries_kind"), "file_entries", KIND_CHECK)
    op.create_index("ux_file_entries_prenote_id", "file_entries", ["prenote_id"], unique=True)
    _set_payment_states(PAYMENT_STATES_OLD, PAYMENT_STATES)


def downgrade() -> None:
    op.execute("UPDATE payments SET state = 'pending' WHERE state = 'held'")
    _set_payment_states(PAYMENT_STATES, PAYMENT_STATES_OLD)
    op.execute("DELETE FROM file_entries WHERE kind = 'prenote'")
    op.drop_index("ux_file_entries_prenote_id", table_name="file_entries")
    if op.get_bind().dialect.name == "sqlite":
        cols = ", ".join(c for c in _columns("file_entries") if c not in ("kind", "prenote_id"))
        _sqlite_rebuild("file_entries", _drop_entry_columns, cols, cols)
    else:
        op.drop_constraint(op.f("ck_file_entries_kind"), "file_entries", type_="check")
        op.drop_constraint("fk_file_entries_prenote_id_prenotes", "file_entries", type_="foreignkey")
        op.drop_column("file_entries", "prenote_id")
        op.drop_column("file_entries", "kind")
    op.drop_index("ix_prenotes_state", table_name="prenotes")
    op.drop_index("ix_prenotes_bank_account_id", table_name="prenotes")
    op.drop_table("prenotes")
