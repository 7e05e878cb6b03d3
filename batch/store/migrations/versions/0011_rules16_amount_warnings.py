"""Recurring debits of varying amount (the amount an AutoPay mandate authorized, the notice of a new
amount), and the warnings a bank file was read with (issue 16).

- `autopay_mandates.authorized_amount_cents` (optional): the most a pull may take without a notice
  to the member (set by the mandate's first pull; raised after an `autopay_amount_change` notice).
  Existing mandates have none: their next pull sets it.
- `notices.kind` may be `autopay_amount_change`.
- `return_files.warnings` (optional, JSON like `errors`): what the reader warned of, recorded with
  the file whether applied or rejected (the bank profile's field defects of return and NOC files:
  a return batch's Effective Entry Date of zeros, an addenda 98/99 trace other than its entry's;
  an unknown but well-formed return code, ...). Existing files have none.

`notices` is referred to by no table, so SQLite rebuilds it in Alembic's batch mode for the CHECK.
Downgrade deletes the `autopay_amount_change` notices (the older CHECK cannot hold them).

Revision ID: 0011_rules16_amount_warnings
Revises: 0010_key_ids
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_rules16_amount_warnings"  # ("rules-16": a revision id cannot hold "-")
down_revision = "0010_key_ids"
branch_labels = None
depends_on = None

# Frozen copies of the value sets at this revision.
NOTICE_KINDS_OLD = ("returned_payment", "past_due_warning", "termination_warning", "coverage_not_started",
                    "coverage_terminated")
NOTICE_KINDS = NOTICE_KINDS_OLD + ("autopay_amount_change",)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _set_notice_kinds(kinds: tuple[str, ...]) -> None:
    with op.batch_alter_table("notices") as b:
        b.drop_constraint(op.f("ck_notices_kind"), type_="check")
        b.create_check_constraint(op.f("ck_notices_kind"), _in("kind", kinds))


def upgrade() -> None:
    op.add_column("autopay_mandates", sa.Column("authorized_amount_cents", sa.BigInteger(), nullable=True))
    _set_notice_kinds(NOTICE_KINDS)
    op.add_column("return_files", sa.Column("warnings", sa.Text(), nullable=True))


def downgrade() -> None:
    # return_files is referred to by several tables: no batch-mode rebuild (see 0007); SQLite 3.35+
    # drops a plain column in place, PostgreSQL likewise.
    op.execute("ALTER TABLE return_files DROP COLUMN warnings")
    op.execute("DELETE FROM notices WHERE kind = 'autopay_amount_change'")
    _set_notice_kinds(NOTICE_KINDS_OLD)
    with op.batch_alter_table("autopay_mandates") as b:
        b.drop_column("authorized_amount_cents")
