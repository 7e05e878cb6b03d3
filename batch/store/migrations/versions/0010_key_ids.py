"""Each encrypted value records the id of the key it was encrypted with, in a column of its own.

The id is inside every ciphertext already (version byte, then 4 bytes of key id), but finding which
keys the stored data needs from there means reading every blob (a stored NACHA file is about
100 MB). `bank_accounts.key_id`, `nacha_file_contents.key_id` and `return_file_contents.key_id`
(8 hex digits, indexed) answer it
with one small query: a command refuses to run with a keyring that matches none of them, and the
embedded default never creates a key while any exists (batch.store.crypto).

The columns are filled from the ciphertexts' own key ids. Downgrading drops them (the ids stay in
the ciphertexts).

Revision ID: 0010_key_ids
Revises: 0009_review_resolutions
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_key_ids"
down_revision = "0009_review_resolutions"
branch_labels = None
depends_on = None

TABLES = (("bank_accounts", "account_number_enc"), ("nacha_file_contents", "content_enc"),
          ("return_file_contents", "content_enc"))


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for table, blob in TABLES:
        if pg:
            op.add_column(table, sa.Column("key_id", sa.String(8), nullable=True))
            op.execute(f"UPDATE {table} SET key_id = encode(substring({blob} from 2 for 4), 'hex')")
            op.alter_column(table, "key_id", nullable=False)
        else:
            # SQLite adds a NOT NULL column only with a default; every insert names the column
            op.execute(f"ALTER TABLE {table} ADD COLUMN key_id VARCHAR(8) NOT NULL DEFAULT ''")
            op.execute(f"UPDATE {table} SET key_id = lower(hex(substr({blob}, 2, 4)))")
        op.create_index(f"ix_{table}_key_id", table, ["key_id"])


def downgrade() -> None:
    for table, _blob in TABLES:
        op.drop_index(f"ix_{table}_key_id", table_name=table)
        op.execute(f"ALTER TABLE {table} DROP COLUMN key_id")
