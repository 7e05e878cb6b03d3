"""`payments.autopay_premium_id` is the pull's own premium: a CHECK (`autopay_premium_id IS NULL OR
autopay_premium_id = premium_id`) instead of a second foreign key to `premiums`.

Every AutoPay pull is created with both columns set to the same premium (batch/collect/autopay.py),
and `premium_id`'s own foreign key already makes the database refuse a premium that does not exist;
the second foreign key looked the same premium up again for every pull (and on PostgreSQL locked its
row a second time): inserting 1,000,000 pulls on PostgreSQL took 21.0-21.5 s with it, 18.1-18.6 s
without (two rounds each). The unique constraint on `autopay_premium_id` (never two pulls for one
premium) stays as it is.

The upgrade first counts the payments the CHECK would refuse and stops, nothing changed, if there
is any. PostgreSQL: the foreign key dropped and the CHECK added (PostgreSQL checks every row as it
adds it). SQLite cannot ALTER a constraint: the stored CREATE TABLE of `payments` loses the
foreign key's clause and gains the CHECK's, in place (batch/store/migrations/sqlite_schema.py;
the rows on disk do not change, and SQLite documents dropping a foreign key this way); the new text
must define the same columns, indexes and other foreign keys. Downgrading puts the foreign key
back (after checking that every `autopay_premium_id` names an existing premium) and drops the CHECK.

Revision ID: 0019_autopay_premium_check
Revises: 0018_check_equalities
Create Date: 2026-12-06
"""
from __future__ import annotations

from alembic import op

from batch.store.db import MigrationRefused
from batch.store.migrations import sqlite_schema

revision = "0019_autopay_premium_check"
down_revision = "0018_check_equalities"
branch_labels = None
depends_on = None

FK = "fk_payments_autopay_premium_id_premiums"
CHECK = "ck_payments_autopay_premium_own"
RULE = "autopay_premium_id IS NULL OR autopay_premium_id = premium_id"
# The clauses as they stand in SQLite's stored CREATE TABLE of payments (SQLAlchemy's layout).
FK_CLAUSE = f"\tCONSTRAINT {FK} FOREIGN KEY(autopay_premium_id) REFERENCES premiums (id), \n"
CHECK_CLAUSE = f", \n\tCONSTRAINT {CHECK} CHECK ({RULE})\n)"
END = "\n)"


def _without_fk(sql: str) -> str:
    if sql.count(FK_CLAUSE) != 1 or not sql.endswith(END) or CHECK in sql:
        return sql
    return sql.replace(FK_CLAUSE, "").removesuffix(END) + CHECK_CLAUSE


def _with_fk(sql: str) -> str:
    if not sql.endswith(CHECK_CLAUSE) or FK in sql:
        return sql
    after = "\tCONSTRAINT fk_payments_retry_of_id_payments"  # the clause the foreign key stood before
    if sql.count(after) != 1:
        return sql
    return sql.removesuffix(CHECK_CLAUSE).replace(after, FK_CLAUSE + after) + END


def _fks(table: str, sql: str) -> set[tuple]:
    return {tuple(row[2:]) for row in sqlite_schema.shape(table, sql)[1]}  # (parent, from, to, actions, match)


def _sqlite(change, inverse) -> None:
    conn = op.get_bind()
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'payments'").scalar_one()
    new = change(sql)
    if new == sql or inverse(new) != sql:
        raise MigrationRefused(f"migration 0019: table payments: its stored CREATE TABLE is not as this migration "
                               f"expects; nothing changed (its text: {sql!r})")
    old_shape, new_shape = sqlite_schema.shape("payments", sql), sqlite_schema.shape("payments", new)
    autopay_fk = {("premiums", "autopay_premium_id", "id", "NO ACTION", "NO ACTION", "NONE")}
    if old_shape[0] != new_shape[0] or old_shape[2] != new_shape[2] \
            or _fks("payments", sql) ^ _fks("payments", new) != autopay_fk:
        raise MigrationRefused(f"migration 0019: table payments: rewritten, its CREATE TABLE would define other "
                               f"columns, indexes or keys; nothing changed (the new text: {new!r})")
    sqlite_schema.write(conn, [("payments", sql, new)])


def upgrade() -> None:
    conn = op.get_bind()
    refused = conn.exec_driver_sql(f"SELECT count(*) FROM payments WHERE NOT ({RULE})").scalar_one()
    if refused:
        raise MigrationRefused(f"migration 0019: payments whose autopay_premium_id is not their premium_id: {refused}; "
                               "nothing changed; look at them before upgrading (SELECT id, premium_id, "
                               "autopay_premium_id FROM payments WHERE autopay_premium_id <> premium_id)")
    if conn.dialect.name == "sqlite":
        _sqlite(_without_fk, _with_fk)
        return
    op.drop_constraint(op.f(FK), "payments", type_="foreignkey")
    op.create_check_constraint(op.f(CHECK), "payments", RULE)


def downgrade() -> None:
    conn = op.get_bind()
    orphans = conn.exec_driver_sql(
        "SELECT count(*) FROM payments WHERE autopay_premium_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM premiums WHERE premiums.id = payments.autopay_premium_id)").scalar_one()
    if orphans:
        raise MigrationRefused(f"migration 0019: payments naming an AutoPay premium that does not exist: {orphans}; "
                               "nothing changed")
    if conn.dialect.name == "sqlite":
        _sqlite(_with_fk, _without_fk)
        return
    op.drop_constraint(op.f(CHECK), "payments", type_="check")
    op.create_foreign_key(op.f(FK), "payments", "premiums", ["autopay_premium_id"], ["id"])
