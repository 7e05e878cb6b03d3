"""The premium ledger: premiums, bank accounts, AutoPay mandates, payments, NACHA files and
entries, sequences (trace number counter seeded at 0) and the import ledger.

Revision ID: 0001_ledger
Revises:
Create Date: 2026-01-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the value sets at this revision (batch/store/models.py may grow later).
SUBSIDIES = ("none", "aptc", "connectorcare")
ACCOUNT_TYPES = ("checking", "savings")
ACCOUNT_STATUSES = ("active", "blocked")
VALIDATION_RESULTS = ("unvalidated", "pending", "valid", "invalid")
MANDATE_CHANNELS = ("web", "paper")
MANDATE_STATUSES = ("active", "suspended", "revoked")
PAYMENT_CHANNELS = ("portal", "guest", "phone", "mail", "autopay", "retry")
PAYMENT_STATES = ("pending", "in_file", "sent", "settled", "returned", "failed", "paid")
SEC_CODES = ("WEB", "PPD", "TEL")
PAYMENT_TYPE_CODES = ("S", "R", "")
FILE_STATES = ("built", "sending", "sent")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(nullable: bool = False) -> dict:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


def upgrade() -> None:
    op.create_table(
        "premiums",
        sa.Column("id", _id(), nullable=False),
        sa.Column("member_id", sa.String(15), nullable=False),
        sa.Column("member_name", sa.String(100), nullable=False),
        sa.Column("plan_id", sa.String(20), nullable=False),
        sa.Column("coverage_month", sa.Date(), nullable=False),
        sa.Column("amount_due_cents", sa.BigInteger(), nullable=False),
        sa.Column("subsidy", sa.String(16), nullable=False),
        sa.Column("binder", sa.Boolean(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("created_at", **_ts()),
        sa.Column("updated_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_premiums"),
        sa.UniqueConstraint("member_id", "plan_id", "coverage_month",
                            name="uq_premiums_member_id_plan_id_coverage_month"),
        sa.CheckConstraint("amount_due_cents >= 0", name=op.f("ck_premiums_amount_due")),
        sa.CheckConstraint(_in("subsidy", SUBSIDIES), name=op.f("ck_premiums_subsidy")),
    )
    op.create_index("ix_premiums_due_date", "premiums", ["due_date"])

    op.create_table(
        "bank_accounts",
        sa.Column("id", _id(), nullable=False),
        sa.Column("routing_number", sa.String(9), nullable=False),
        sa.Column("account_number_enc", sa.LargeBinary(), nullable=False),
        sa.Column("account_hash", sa.String(64), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("account_type", sa.String(8), nullable=False),
        sa.Column("holder_name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("status_reason", sa.String(100), nullable=True),
        sa.Column("validation_method", sa.String(32), nullable=True),
        sa.Column("validated_on", sa.Date(), nullable=True),
        sa.Column("validation_result", sa.String(16), nullable=False),
        sa.Column("created_at", **_ts()),
        sa.Column("updated_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_bank_accounts"),
        sa.UniqueConstraint("account_hash", "routing_number", name="uq_bank_accounts_account_hash_routing_number"),
        sa.CheckConstraint(_in("account_type", ACCOUNT_TYPES), name=op.f("ck_bank_accounts_account_type")),
        sa.CheckConstraint(_in("status", ACCOUNT_STATUSES), name=op.f("ck_bank_accounts_status")),
        sa.CheckConstraint(_in("validation_result", VALIDATION_RESULTS), name=op.f("ck_bank_accounts_validation_result")),
        sa.CheckConstraint("length(routing_number) = 9", name=op.f("ck_bank_accounts_routing_number")),
        sa.CheckConstraint("length(last4) <= 4", name=op.f("ck_bank_accounts_last4")),
    )

    op.create_table(
        "autopay_mandates",
        sa.Column("id", _id(), nullable=False),
        sa.Column("member_id", sa.String(15), nullable=False),
        sa.Column("plan_id", sa.String(20), nullable=False),
        sa.Column("bank_account_id", _id(), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("authorized_at", **_ts()),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("status_reason", sa.String(100), nullable=True),
        sa.Column("active_key", sa.String(40), nullable=True),
        sa.Column("ended_at", **_ts(nullable=True)),
        sa.Column("created_at", **_ts()),
        sa.Column("updated_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_autopay_mandates"),
        sa.ForeignKeyConstraint(["bank_account_id"], ["bank_accounts.id"],
                                name="fk_autopay_mandates_bank_account_id_bank_accounts"),
        sa.UniqueConstraint("active_key", name="uq_autopay_mandates_active_key"),
        sa.CheckConstraint(_in("channel", MANDATE_CHANNELS), name=op.f("ck_autopay_mandates_channel")),
        sa.CheckConstraint(_in("status", MANDATE_STATUSES), name=op.f("ck_autopay_mandates_status")),
        sa.CheckConstraint(
            "(status IN ('active', 'suspended') AND active_key IS NOT NULL AND active_key = member_id || '|' || plan_id)"
            " OR (status NOT IN ('active', 'suspended') AND active_key IS NULL)",
            name=op.f("ck_autopay_mandates_active_key"),
        ),
    )
    op.create_index("ix_autopay_mandates_member_plan", "autopay_mandates", ["member_id", "plan_id"])

    op.create_table(
        "payments",
        sa.Column("id", _id(), nullable=False),
        sa.Column("confirmation_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("member_id", sa.String(15), nullable=False),
        sa.Column("plan_id", sa.String(20), nullable=False),
        sa.Column("coverage_month", sa.Date(), nullable=False),
        sa.Column("premium_id", _id(), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("bank_account_id", _id(), nullable=True),
        sa.Column("submitted_at", **_ts()),
        sa.Column("sec_code", sa.String(3), nullable=True),
        sa.Column("payment_type_code", sa.String(1), nullable=False),
        sa.Column("originate_on", sa.Date(), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("autopay_premium_id", _id(), nullable=True),
        sa.Column("retry_of_id", _id(), nullable=True),
        sa.Column("retry_number", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", **_ts()),
        sa.Column("updated_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
        sa.ForeignKeyConstraint(["premium_id"], ["premiums.id"], name="fk_payments_premium_id_premiums"),
        sa.ForeignKeyConstraint(["bank_account_id"], ["bank_accounts.id"],
                                name="fk_payments_bank_account_id_bank_accounts"),
        sa.ForeignKeyConstraint(["autopay_premium_id"], ["premiums.id"],
                                name="fk_payments_autopay_premium_id_premiums"),
        sa.ForeignKeyConstraint(["retry_of_id"], ["payments.id"], name="fk_payments_retry_of_id_payments"),
        sa.UniqueConstraint("confirmation_id", name="uq_payments_confirmation_id"),
        sa.UniqueConstraint("autopay_premium_id", name="uq_payments_autopay_premium_id"),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_payments_amount")),
        sa.CheckConstraint(_in("channel", PAYMENT_CHANNELS), name=op.f("ck_payments_channel")),
        sa.CheckConstraint(_in("state", PAYMENT_STATES), name=op.f("ck_payments_state")),
        sa.CheckConstraint(f"sec_code IS NULL OR {_in('sec_code', SEC_CODES)}", name=op.f("ck_payments_sec_code")),
        sa.CheckConstraint(_in("payment_type_code", PAYMENT_TYPE_CODES), name=op.f("ck_payments_payment_type_code")),
        sa.CheckConstraint(
            "(channel = 'mail' AND bank_account_id IS NULL AND sec_code IS NULL AND state = 'paid')"
            " OR (channel <> 'mail' AND bank_account_id IS NOT NULL AND sec_code IS NOT NULL"
            " AND originate_on IS NOT NULL AND state <> 'paid')",
            name=op.f("ck_payments_mail"),
        ),
        sa.CheckConstraint("autopay_premium_id IS NULL OR channel = 'autopay'", name=op.f("ck_payments_autopay_premium")),
    )
    op.create_index("ix_payments_state_originate_on", "payments", ["state", "originate_on"])
    op.create_index("ix_payments_member_plan_month", "payments", ["member_id", "plan_id", "coverage_month"])
    op.create_index("ix_payments_premium_id", "payments", ["premium_id"])

    op.create_table(
        "nacha_files",
        sa.Column("id", _id(), nullable=False),
        sa.Column("file_date", sa.Date(), nullable=False),
        sa.Column("file_id_modifier", sa.String(1), nullable=False),
        sa.Column("file_name", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_enc", sa.LargeBinary(), nullable=False),
        sa.Column("batch_count", sa.Integer(), nullable=False),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("total_debit_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_credit_cents", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("sent_at", **_ts(nullable=True)),
        sa.Column("created_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_nacha_files"),
        sa.UniqueConstraint("file_date", "file_id_modifier", name="uq_nacha_files_file_date_file_id_modifier"),
        sa.UniqueConstraint("file_name", name="uq_nacha_files_file_name"),
        sa.CheckConstraint(_in("state", FILE_STATES), name=op.f("ck_nacha_files_state")),
        sa.CheckConstraint("length(file_id_modifier) = 1", name=op.f("ck_nacha_files_file_id_modifier")),
    )

    op.create_table(
        "file_entries",
        sa.Column("id", _id(), nullable=False),
        sa.Column("file_id", _id(), nullable=False),
        sa.Column("batch_number", sa.Integer(), nullable=False),
        sa.Column("trace_number", sa.String(15), nullable=False),
        sa.Column("payment_id", _id(), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("transaction_code", sa.String(2), nullable=False),
        sa.Column("sec_code", sa.String(3), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_file_entries"),
        sa.ForeignKeyConstraint(["file_id"], ["nacha_files.id"], name="fk_file_entries_file_id_nacha_files"),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name="fk_file_entries_payment_id_payments"),
        sa.UniqueConstraint("trace_number", name="uq_file_entries_trace_number"),
        sa.UniqueConstraint("payment_id", name="uq_file_entries_payment_id"),
        sa.CheckConstraint("length(trace_number) = 15", name=op.f("ck_file_entries_trace_number")),
    )
    op.create_index("ix_file_entries_file_id", "file_entries", ["file_id"])

    sequences = op.create_table(
        "sequences",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_sequences"),
    )
    # Seeded so that claiming is always an UPDATE ... RETURNING (no insert race).
    op.bulk_insert(sequences, [{"name": "trace", "value": 0}])

    op.create_table(
        "import_runs",
        sa.Column("id", _id(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("file_name", sa.String(500), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=False),
        sa.Column("rows_loaded", sa.Integer(), nullable=False),
        sa.Column("rows_updated", sa.Integer(), nullable=False),
        sa.Column("rows_unchanged", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("created_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_import_runs"),
    )
    op.create_index("ix_import_runs_kind_sha256", "import_runs", ["kind", "sha256"])


def downgrade() -> None:
    for index, table in (("ix_import_runs_kind_sha256", "import_runs"), ("ix_file_entries_file_id", "file_entries"),
                         ("ix_payments_premium_id", "payments"), ("ix_payments_member_plan_month", "payments"),
                         ("ix_payments_state_originate_on", "payments"),
                         ("ix_autopay_mandates_member_plan", "autopay_mandates"),
                         ("ix_premiums_due_date", "premiums")):
        op.drop_index(index, table_name=table)
    for table in ("import_runs", "sequences", "file_entries", "nacha_files", "payments", "autopay_mandates",
                  "bank_accounts", "premiums"):
        op.drop_table(table)
