"""A built file's bytes move out of its `nacha_files` row into `nacha_file_contents`.

A file's row is updated at every step of its delivery (built -> sending -> sent, and by the
ledger's retries), and SQLite rewrites a whole row on each update: with the encrypted bytes in it
(about 100 MB for a million entries) every state change wrote the file again. The bytes are written
once, at origination, and only read afterwards. On PostgreSQL the column is stored EXTERNAL: the
ciphertext does not compress, so nothing is lost by not trying, and a slice of it is read without
reading the rest.

SQLite drops the old column with its own ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later), not
by copying the table: other tables refer to nacha_files, and with foreign keys on, dropping the
table to rebuild it would act as a DELETE of every file.

Revision ID: 0006_file_contents
Revises: 0005_payment_indexes
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_file_contents"
down_revision = "0005_payment_indexes"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _dialect() -> str:
    return op.get_bind().dialect.name


def _check_sqlite() -> None:
    if _dialect() == "sqlite":
        import sqlite3

        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise RuntimeError(f"this migration needs SQLite 3.35 or later (ALTER TABLE DROP COLUMN); Python "
                               f"uses SQLite {sqlite3.sqlite_version}")


def upgrade() -> None:
    _check_sqlite()
    op.create_table(
        "nacha_file_contents",
        sa.Column("file_id", _id(), nullable=False),
        sa.Column("content_enc", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["nacha_files.id"], ondelete="CASCADE",
                                name="fk_nacha_file_contents_file_id_nacha_files"),
        sa.PrimaryKeyConstraint("file_id", name="pk_nacha_file_contents"),
    )
    if _dialect() == "postgresql":
        op.execute("ALTER TABLE nacha_file_contents ALTER COLUMN content_enc SET STORAGE EXTERNAL")
    op.execute("INSERT INTO nacha_file_contents (file_id, content_enc) SELECT id, content_enc FROM nacha_files")
    op.execute("ALTER TABLE nacha_files DROP COLUMN content_enc")


def downgrade() -> None:
    _check_sqlite()
    pg = _dialect() == "postgresql"
    # NOT NULL as before; SQLite can add such a column only with a default (it stays, harmless).
    op.execute("ALTER TABLE nacha_files ADD COLUMN content_enc "
               + ("BYTEA NOT NULL DEFAULT '\\x'::bytea" if pg else "BLOB NOT NULL DEFAULT X''"))
    op.execute("UPDATE nacha_files SET content_enc = (SELECT c.content_enc FROM nacha_file_contents c "
               "WHERE c.file_id = nacha_files.id) "
               "WHERE EXISTS (SELECT 1 FROM nacha_file_contents c WHERE c.file_id = nacha_files.id)")
    if pg:
        op.execute("ALTER TABLE nacha_files ALTER COLUMN content_enc DROP DEFAULT")
    op.drop_table("nacha_file_contents")
