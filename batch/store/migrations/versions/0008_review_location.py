"""Review items say where in the bank's record they point.

`review_items.location` (optional): the location of the bank file field an item is about, as the
NACHA reader states a problem's (`nacha.errors.Issue`): its line (the entry or its addenda), columns,
record and field, stored as JSON `{"line": 4, "columns": [7, 21], "record": "addenda_99",
"field": "original_entry_trace_number"}`. Existing items have none (their file and line stay).

Revision ID: 0008_review_location
Revises: 0007_money_rules
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_review_location"
down_revision = "0007_money_rules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("review_items", sa.Column("location", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_items") as b:
        b.drop_column("location")
