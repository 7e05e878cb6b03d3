"""Returns, NOCs, coverage standing and notices: the bank-file ledger (return_files), applied
returns (payment_returns), payment events, the NOC audit (account_changes), the review list
(review_items), coverage flags with history (coverage_flags), member notices (notices), and
indexes on payments.retry_of_id (re-presentments of a payment are counted by it) and on
payments.bank_account_id and autopay_mandates.bank_account_id (a blocked account's payments and
mandates).

Revision ID: 0003_returns
Revises: 0002_delivery
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_returns"
down_revision = "0002_delivery"
branch_labels = None
depends_on = None

# Frozen copies of the value sets at this revision (batch/store/models.py may grow later).
RETURN_FILE_STATUSES = ("applied", "rejected")
RETURN_KINDS = ("return", "dishonored", "contested")
RETURN_STATUSES = ("applied", "dishonored")
NOC_STATUSES = ("applied", "unchanged", "noted", "refused", "rejected")
REVIEW_STATUSES = ("open", "resolved")
COVERAGE_STATUSES = ("ok", "not_started", "past_due", "termination_pending", "terminated")
NOTICE_KINDS = ("returned_payment", "past_due_warning", "termination_warning", "coverage_not_started",
                "coverage_terminated")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(nullable: bool = False) -> dict:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}")


def upgrade() -> None:
    op.create_table(
        "return_files",
        sa.Column("id", _id(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(500), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("processed_on", sa.Date(), nullable=False),
        sa.Column("file_creation_date", sa.Date(), nullable=True),
        sa.Column("returns", sa.Integer(), nullable=False),
        sa.Column("nocs", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("review_items", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Text(), nullable=True),
        sa.Column("created_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_return_files"),
        sa.UniqueConstraint("sha256", name="uq_return_files_sha256"),
        sa.CheckConstraint(_in("status", RETURN_FILE_STATUSES), name=op.f("ck_return_files_status")),
    )

    op.create_table(
        "payment_returns",
        sa.Column("id", _id(), nullable=False),
        sa.Column("return_file_id", _id(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("payment_id", _id(), nullable=False),
        sa.Column("file_entry_id", _id(), nullable=False),
        sa.Column("original_trace_number", sa.String(15), nullable=False),
        sa.Column("return_trace_number", sa.String(15), nullable=False),
        sa.Column("return_code", sa.String(3), nullable=False),
        sa.Column("return_title", sa.String(200), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("disposition", sa.String(24), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("returned_on", sa.Date(), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("retry_payment_id", _id(), nullable=True),
        sa.Column("addenda_information", sa.String(44), nullable=False),
        sa.Column("created_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_payment_returns"),
        _fk("payment_returns", "return_file_id", "return_files"),
        _fk("payment_returns", "payment_id", "payments"),
        _fk("payment_returns", "file_entry_id", "file_entries"),
        _fk("payment_returns", "retry_payment_id", "payments"),
        sa.UniqueConstraint("return_file_id", "line", name="uq_payment_returns_return_file_id_line"),
        sa.CheckConstraint(_in("kind", RETURN_KINDS), name=op.f("ck_payment_returns_kind")),
        sa.CheckConstraint(_in("status", RETURN_STATUSES), name=op.f("ck_payment_returns_status")),
    )
    op.create_index("ix_payment_returns_payment_id", "payment_returns", ["payment_id"])
    op.create_index("ix_payment_returns_returned_on", "payment_returns", ["returned_on"])

    op.create_table(
        "payment_events",
        sa.Column("id", _id(), nullable=False),
        sa.Column("payment_id", _id(), nullable=False),
        sa.Column("event", sa.String(24), nullable=False),
        sa.Column("old_state", sa.String(10), nullable=False),
        sa.Column("new_state", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("return_file_id", _id(), nullable=True),
        sa.Column("created_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_payment_events"),
        _fk("payment_events", "payment_id", "payments"),
        _fk("payment_events", "return_file_id", "return_files"),
    )
    op.create_index("ix_payment_events_payment_id", "payment_events", ["payment_id"])

    op.create_table(
        "account_changes",
        sa.Column("id", _id(), nullable=False),
        sa.Column("return_file_id", _id(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("bank_account_id", _id(), nullable=True),
        sa.Column("payment_id", _id(), nullable=True),
        sa.Column("original_trace_number", sa.String(15), nullable=False),
        sa.Column("noc_trace_number", sa.String(15), nullable=False),
        sa.Column("change_code", sa.String(3), nullable=False),
        sa.Column("refused_code", sa.String(3), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("old_routing_number", sa.String(9), nullable=True),
        sa.Column("new_routing_number", sa.String(9), nullable=True),
        sa.Column("old_account_masked", sa.String(21), nullable=True),
        sa.Column("new_account_masked", sa.String(21), nullable=True),
        sa.Column("old_account_type", sa.String(8), nullable=True),
        sa.Column("new_account_type", sa.String(8), nullable=True),
        sa.Column("old_holder_name", sa.String(100), nullable=True),
        sa.Column("new_holder_name", sa.String(100), nullable=True),
        sa.Column("old_account_hash", sa.String(64), nullable=True),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.Column("applied_on", sa.Date(), nullable=False),
        sa.Column("created_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_account_changes"),
        _fk("account_changes", "return_file_id", "return_files"),
        _fk("account_changes", "bank_account_id", "bank_accounts"),
        _fk("account_changes", "payment_id", "payments"),
        sa.UniqueConstraint("return_file_id", "line", name="uq_account_changes_return_file_id_line"),
        sa.CheckConstraint(_in("status", NOC_STATUSES), name=op.f("ck_account_changes_status")),
    )
    op.create_index("ix_account_changes_bank_account_id", "account_changes", ["bank_account_id"])

    op.create_table(
        "review_items",
        sa.Column("id", _id(), nullable=False),
        sa.Column("return_file_id", _id(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("code", sa.String(3), nullable=False),
        sa.Column("original_trace_number", sa.String(15), nullable=False),
        sa.Column("trace_number", sa.String(15), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("expected_amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("payment_id", _id(), nullable=True),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("created_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_review_items"),
        _fk("review_items", "return_file_id", "return_files"),
        _fk("review_items", "payment_id", "payments"),
        sa.CheckConstraint(_in("status", REVIEW_STATUSES), name=op.f("ck_review_items_status")),
    )
    op.create_index("ix_review_items_status", "review_items", ["status"])

    op.create_table(
        "coverage_flags",
        sa.Column("id", _id(), nullable=False),
        sa.Column("member_id", sa.String(15), nullable=False),
        sa.Column("plan_id", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason_code", sa.String(24), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("months_owed", sa.Integer(), nullable=False),
        sa.Column("amount_owed_cents", sa.BigInteger(), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("grace_month", sa.SmallInteger(), nullable=False),
        sa.Column("grace_months", sa.SmallInteger(), nullable=False),
        sa.Column("first_unpaid_month", sa.Date(), nullable=True),
        sa.Column("coverage_ends_on", sa.Date(), nullable=True),
        sa.Column("subsidy", sa.String(16), nullable=False),
        sa.Column("assessed_on", sa.Date(), nullable=False),
        sa.Column("last_assessed_on", sa.Date(), nullable=False),
        sa.Column("superseded_on", sa.Date(), nullable=True),
        sa.Column("current_key", sa.String(40), nullable=True),
        sa.Column("created_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_coverage_flags"),
        sa.UniqueConstraint("current_key", name="uq_coverage_flags_current_key"),
        sa.CheckConstraint(_in("status", COVERAGE_STATUSES), name=op.f("ck_coverage_flags_status")),
        sa.CheckConstraint("amount_owed_cents >= 0", name=op.f("ck_coverage_flags_amount_owed")),
        sa.CheckConstraint("current_key IS NULL OR current_key = member_id || '|' || plan_id",
                           name=op.f("ck_coverage_flags_current_key")),
    )
    op.create_index("ix_coverage_flags_member_plan", "coverage_flags", ["member_id", "plan_id"])

    op.create_table(
        "notices",
        sa.Column("id", _id(), nullable=False),
        sa.Column("event_key", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("member_id", sa.String(15), nullable=False),
        sa.Column("plan_id", sa.String(20), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("amount_owed_cents", sa.BigInteger(), nullable=False),
        sa.Column("file_name", sa.String(300), nullable=False),
        sa.Column("notice_date", sa.Date(), nullable=False),
        sa.Column("payment_return_id", _id(), nullable=True),
        sa.Column("coverage_flag_id", _id(), nullable=True),
        sa.Column("created_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_notices"),
        _fk("notices", "payment_return_id", "payment_returns"),
        _fk("notices", "coverage_flag_id", "coverage_flags"),
        sa.UniqueConstraint("event_key", name="uq_notices_event_key"),
        sa.CheckConstraint(_in("kind", NOTICE_KINDS), name=op.f("ck_notices_kind")),
    )
    op.create_index("ix_notices_notice_date", "notices", ["notice_date"])

    op.create_index("ix_payments_retry_of_id", "payments", ["retry_of_id"])
    op.create_index("ix_payments_bank_account_id", "payments", ["bank_account_id"])
    op.create_index("ix_autopay_mandates_bank_account_id", "autopay_mandates", ["bank_account_id"])


def downgrade() -> None:
    op.drop_index("ix_autopay_mandates_bank_account_id", table_name="autopay_mandates")
    op.drop_index("ix_payments_bank_account_id", table_name="payments")
    op.drop_index("ix_payments_retry_of_id", table_name="payments")
    for table in ("notices", "coverage_flags", "review_items", "account_changes", "payment_events",
                  "payment_returns", "return_files"):
        op.drop_table(table)
