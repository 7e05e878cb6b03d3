"""The review queue: each decision on a review item is an audit row, and the bytes of a bank file
that opened review items are kept (encrypted) so the entry can be read again when a person decides.

- `review_resolutions`: one row per resolved review item (`review_item_id` unique: an item is
  resolved once): the action (`apply`, `dismiss`), who, when, the note, the payment a person named
  (`apply --payment N`), whether `--force` overrode an amount or account mismatch (and which), and
  the state before and after (JSON text).
- `return_file_contents`: the encrypted bytes of a return/NOC file, stored when the file opened
  review items (the entry and its addenda carry the account number: never stored in plain text).

Revision ID: 0009_review_resolutions
Revises: 0008_review_location
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_review_resolutions"
down_revision = "0008_review_location"
branch_labels = None
depends_on = None

# Frozen copy of the value set at this revision.
REVIEW_ACTIONS = ("apply", "dismiss")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "review_resolutions",
        sa.Column("id", _id(), nullable=False),
        sa.Column("review_item_id", _id(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("resolved_by", sa.String(100), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("payment_id", _id(), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("overridden", sa.String(300), nullable=True),
        sa.Column("before_state", sa.Text(), nullable=False),
        sa.Column("after_state", sa.Text(), nullable=False),
        sa.CheckConstraint(_in("action", REVIEW_ACTIONS), name=op.f("ck_review_resolutions_action")),
        sa.CheckConstraint("action = 'apply' OR (payment_id IS NULL AND NOT forced)",
                           name=op.f("ck_review_resolutions_apply_only")),
        sa.ForeignKeyConstraint(["review_item_id"], ["review_items.id"],
                                name=op.f("fk_review_resolutions_review_item_id_review_items")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"],
                                name=op.f("fk_review_resolutions_payment_id_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_resolutions")),
        sa.UniqueConstraint("review_item_id", name=op.f("uq_review_resolutions_review_item_id")),
    )
    op.create_table(
        "return_file_contents",
        sa.Column("return_file_id", _id(), nullable=False),
        sa.Column("content_enc", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["return_file_id"], ["return_files.id"], ondelete="CASCADE",
                                name=op.f("fk_return_file_contents_return_file_id_return_files")),
        sa.PrimaryKeyConstraint("return_file_id", name=op.f("pk_return_file_contents")),
    )


def downgrade() -> None:
    op.drop_table("return_file_contents")
    op.drop_table("review_resolutions")
