"""A member notice for a returned prenote, and a person's match of a bank entry to a prenote
(issue 16, WEB account validation follow-ups).

- `notices.kind` may be `account_not_validated`: the notice of a returned prenote (the account was
  blocked, AutoPay suspended, held and pending payments failed; what the member should do).
- `notices.prenote_id` (optional, unique): the prenote a notice is about; one notice per prenote.
- `review_resolutions.prenote_id` (optional): `review resolve N --action apply --prenote ID` applies a
  bank entry (a return or NOC) to the prenote a person identified; the audit row names it.

`notices` and `review_resolutions` are referred to by no table, so SQLite rebuilds them in
Alembic's batch mode. Downgrade deletes the `account_not_validated` notices (the older CHECK cannot
hold them) and the resolutions' prenote ids.

Revision ID: 0015_prenote_notices
Revises: 0014_web_validate_prenotes
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_prenote_notices"
down_revision = "0014_web_validate_prenotes"
branch_labels = None
depends_on = None

# Frozen copies of the value sets at this revision.
NOTICE_KINDS_OLD = ("returned_payment", "past_due_warning", "termination_warning", "coverage_not_started",
                    "coverage_terminated", "autopay_amount_change")
NOTICE_KINDS = NOTICE_KINDS_OLD + ("account_not_validated",)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("notices") as b:
        b.add_column(sa.Column("prenote_id", _id(), nullable=True))
        b.create_foreign_key(op.f("fk_notices_prenote_id_prenotes"), "prenotes", ["prenote_id"], ["id"])
        b.create_unique_constraint(op.f("uq_notices_prenote_id"), ["prenote_id"])
        b.drop_constraint(op.f("ck_notices_kind"), type_="check")
        b.create_check_constraint(op.f("ck_notices_kind"), _in("kind", NOTICE_KINDS))
    with op.batch_alter_table("review_resolutions") as b:
        b.add_column(sa.Column("prenote_id", _id(), nullable=True))
        b.create_foreign_key(op.f("fk_review_resolutions_prenote_id_prenotes"), "prenotes", ["prenote_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("review_resolutions") as b:
        b.drop_constraint(op.f("fk_review_resolutions_prenote_id_prenotes"), type_="foreignkey")
        b.drop_column("prenote_id")
    op.execute("DELETE FROM notices WHERE kind = 'account_not_validated'")
    with op.batch_alter_table("notices") as b:
        b.drop_constraint(op.f("ck_notices_kind"), type_="check")
        b.create_check_constraint(op.f("ck_notices_kind"), _in("kind", NOTICE_KINDS_OLD))
        b.drop_constraint(op.f("uq_notices_prenote_id"), type_="unique")
        b.drop_constraint(op.f("fk_notices_prenote_id_prenotes"), type_="foreignkey")
        b.drop_column("prenote_id")
