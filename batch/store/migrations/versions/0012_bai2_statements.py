"""The bank's BAI2 statements and what they were matched to (issue 15, "Tie-out to the bank's statement").

- `inbound_files.kind`: 'returns' (return, NOC and acknowledgement files, as before) or
  'statement' (a BAI2 report fetched under `[bank] statements`); each processor takes only its own.
- `return_files.return_total_cents` / `settlement_date`: the total of a return file's return entries
  and the day they settle (the return batches' settlement date), what the bank debits us; NULL on
  files applied before this migration (not expected on a statement).
- `statement_files`: one row per BAI2 file reconciled (sha256 unique: processed once);
  `statement_lines`: its transaction details (16 records) of the mapped ACH type codes, with what
  each was matched to. Account numbers are kept as their last four digits only.

Revision ID: 0012_bai2_statements
Revises: 0011_rules16_amount_warnings
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_bai2_statements"
down_revision = "0011_rules16_amount_warnings"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA defer_foreign_keys = ON")  # inbound_files is rebuilt (its kind has a CHECK)
    with op.batch_alter_table("inbound_files") as b:
        b.add_column(sa.Column("kind", sa.String(12), nullable=False, server_default="returns"))
        b.create_check_constraint(op.f("ck_inbound_files_kind"), "kind IN ('returns', 'statement')")
    # plain ALTER TABLE (no table rebuild: other tables' rows point at return_files)
    op.add_column("return_files", sa.Column("return_total_cents", sa.BigInteger(), nullable=True))
    op.add_column("return_files", sa.Column("settlement_date", sa.Date(), nullable=True))
    op.create_table(
        "statement_files",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(500), nullable=False),
        sa.Column("sender_id", sa.String(40), nullable=False),
        sa.Column("bank_file_id", sa.String(40), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("processed_on", sa.Date(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("unexplained", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_statement_files"),
        sa.UniqueConstraint("sha256", name="uq_statement_files_sha256"),
    )
    op.create_table(
        "statement_lines",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("statement_file_id", _ID, sa.ForeignKey("statement_files.id",
                                                          name="fk_statement_lines_statement_file_id_statement_files"),
                  nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("account_last4", sa.String(4), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("type_code", sa.String(3), nullable=False),
        sa.Column("direction", sa.String(6), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("bank_reference", sa.String(100), nullable=False),
        sa.Column("customer_reference", sa.String(100), nullable=False),
        sa.Column("text", sa.String(200), nullable=False),
        sa.Column("nacha_file_id", _ID, sa.ForeignKey("nacha_files.id",
                                                      name="fk_statement_lines_nacha_file_id_nacha_files"),
                  nullable=True),
        sa.Column("return_file_id", _ID, sa.ForeignKey("return_files.id",
                                                       name="fk_statement_lines_return_file_id_return_files"),
                  nullable=True),
        sa.Column("match_basis", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_statement_lines"),
        sa.UniqueConstraint("statement_file_id", "line", name="uq_statement_lines_statement_file_id_line"),
        sa.UniqueConstraint("nacha_file_id", name="uq_statement_lines_nacha_file_id"),
        sa.UniqueConstraint("return_file_id", name="uq_statement_lines_return_file_id"),
        sa.CheckConstraint("direction IN ('credit', 'debit')", name=op.f("ck_statement_lines_direction")),
    )


def downgrade() -> None:
    op.drop_table("statement_lines")
    op.drop_table("statement_files")
    # ALTER TABLE DROP COLUMN (SQLite 3.35 or later, as migration 0006 needs)
    op.execute("ALTER TABLE return_files DROP COLUMN settlement_date")
    op.execute("ALTER TABLE return_files DROP COLUMN return_total_cents")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA defer_foreign_keys = ON")  # inbound_files is rebuilt (its kind has a CHECK)
    with op.batch_alter_table("inbound_files") as b:
        b.drop_constraint(op.f("ck_inbound_files_kind"), type_="check")
        b.drop_column("kind")
