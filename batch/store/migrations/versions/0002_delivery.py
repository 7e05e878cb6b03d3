"""Delivery to the bank and inbound bank files (issue 4): the delivery ledger (`deliveries`, one row
per NACHA file sent; `delivery_attempts`, one per try) and the inbound ledger (`inbound_files`).

Revision ID: 0002_delivery
Revises: 0001_ledger
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_delivery"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None

# The same value sets as batch/store/models.py (a migration never imports the models: they move on).
DELIVERY_OUTCOMES = ("sent", "already_there", "unreachable", "lost", "refused", "config", "failed")
INBOUND_STATES = ("received", "duplicate", "processed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(nullable: bool = False) -> dict:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", _id(), nullable=False),
        sa.Column("file_id", _id(), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("destination", sa.String(500), nullable=False),
        sa.Column("remote_name", sa.String(255), nullable=True),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("payload_size", sa.BigInteger(), nullable=False),
        sa.Column("pgp_recipient", sa.String(200), nullable=True),
        sa.Column("pgp_payload", sa.LargeBinary(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("uploads", sa.Integer(), nullable=False),
        sa.Column("ambiguous", sa.Boolean(), nullable=False),
        sa.Column("first_attempt_at", **_ts(nullable=True)),
        sa.Column("last_attempt_at", **_ts(nullable=True)),
        sa.Column("sent_at", **_ts(nullable=True)),
        sa.Column("last_error", sa.String(1000), nullable=True),
        sa.Column("created_at", **_ts()),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.ForeignKeyConstraint(["file_id"], ["nacha_files.id"], name="fk_deliveries_file_id_nacha_files"),
        sa.UniqueConstraint("file_id", name="uq_deliveries_file_id"),
        sa.UniqueConstraint("destination", "remote_name", name="uq_deliveries_destination_remote_name"),
        sa.CheckConstraint("attempts >= 0 AND uploads >= 0", name=op.f("ck_deliveries_counts")),
        sa.CheckConstraint("payload_size >= 0", name=op.f("ck_deliveries_payload_size")),
    )

    op.create_table(
        "delivery_attempts",
        sa.Column("id", _id(), nullable=False),
        sa.Column("delivery_id", _id(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", **_ts()),
        sa.Column("finished_at", **_ts(nullable=True)),
        sa.Column("upload_name", sa.String(255), nullable=True),
        sa.Column("remote_name", sa.String(255), nullable=False),
        sa.Column("bytes_sent", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("error", sa.String(1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_attempts"),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"],
                                name="fk_delivery_attempts_delivery_id_deliveries"),
        sa.UniqueConstraint("delivery_id", "number", name="uq_delivery_attempts_delivery_id_number"),
        sa.CheckConstraint(f"outcome IS NULL OR {_in('outcome', DELIVERY_OUTCOMES)}",
                           name=op.f("ck_delivery_attempts_outcome")),
    )

    op.create_table(
        "inbound_files",
        sa.Column("id", _id(), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("remote_name", sa.String(255), nullable=False),
        sa.Column("remote_size", sa.BigInteger(), nullable=False),
        sa.Column("remote_mtime", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_key", sa.String(64), nullable=True),
        sa.Column("duplicate_of_id", _id(), nullable=True),
        sa.Column("decrypted", sa.Boolean(), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("local_name", sa.String(255), nullable=True),
        sa.Column("archive_path", sa.String(1000), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("received_at", **_ts()),
        sa.Column("remote_archived_at", **_ts(nullable=True)),
        sa.Column("remote_archive_name", sa.String(255), nullable=True),
        sa.Column("processed_at", **_ts(nullable=True)),
        sa.Column("process_result", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_files"),
        sa.ForeignKeyConstraint(["duplicate_of_id"], ["inbound_files.id"],
                                name="fk_inbound_files_duplicate_of_id_inbound_files"),
        sa.UniqueConstraint("source", "remote_name", "remote_size", "remote_mtime",
                            name="uq_inbound_files_source_remote_name_remote_size_remote_mtime"),
        sa.UniqueConstraint("content_key", name="uq_inbound_files_content_key"),
        sa.UniqueConstraint("local_name", name="uq_inbound_files_local_name"),
        sa.CheckConstraint(_in("state", INBOUND_STATES), name=op.f("ck_inbound_files_state")),
        sa.CheckConstraint(
            "(state = 'duplicate' AND content_key IS NULL AND duplicate_of_id IS NOT NULL)"
            " OR (state <> 'duplicate' AND content_key IS NOT NULL AND content_key = sha256"
            " AND duplicate_of_id IS NULL AND local_name IS NOT NULL)",
            name=op.f("ck_inbound_files_duplicate"),
        ),
    )
    op.create_index("ix_inbound_files_state", "inbound_files", ["state"])
    op.create_index("ix_inbound_files_sha256", "inbound_files", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_inbound_files_sha256", table_name="inbound_files")
    op.drop_index("ix_inbound_files_state", table_name="inbound_files")
    for table in ("inbound_files", "delivery_attempts", "deliveries"):
        op.drop_table(table)
