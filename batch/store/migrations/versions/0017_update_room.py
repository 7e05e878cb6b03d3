"""Room on each page for the rows the night updates in place (PostgreSQL).

`bank_accounts` (a new account's prenote requested, then validated; a return blocks it; a NOC
corrects it) and `autopay_mandates` (the first pull's authorized amount) are bulk-loaded by the
imports and then updated, most rows of a night in one statement, in columns no index covers. With
pages filled to 100% every new row version went to another page and into every index (three on
`bank_accounts`, four on `autopay_mandates`); with half of each page free, PostgreSQL writes it on
the same page and touches no index (a heap-only tuple). Measured: originate's UPDATE of 66,667
newly prenoted accounts of 100,000, 1.03 s -> 0.27 s, every update heap-only (at fillfactor 70, 43,483
of 66,667 were). The cost is room: pages loaded at half their capacity, about what the updates
would add anyway.

Only new pages are filled to the new factor; rows already stored move to roomier pages as they are
updated (or at once with `VACUUM FULL bank_accounts, autopay_mandates`, which locks the tables).
SQLite has no fill factor: nothing to do there. Downgrading sets the default (100) back.

Revision ID: 0017_update_room
Revises: 0016_coverage_activation_export
Create Date: 2026-12-05
"""
from __future__ import annotations

from alembic import op

revision = "0017_update_room"
down_revision = "0016_coverage_activation_export"
branch_labels = None
depends_on = None

TABLES = ("bank_accounts", "autopay_mandates")
FILLFACTOR = 50


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
