"""Changing a SQLite table's stored CREATE TABLE text in place, for migrations whose change leaves
every stored row as it is (a CHECK written another way, a foreign key dropped, a CHECK that every
row already passes): SQLite's documented procedure for such changes
(https://www.sqlite.org/lang_altertable.html, "making other kinds of table schema changes"):
writable_schema on, the text updated, schema_version incremented so that every connection reads
the schema again. A rebuild (copy the rows aside, drop, create, copy back, indexes again) would
move every row of the largest tables for nothing.

The caller checks what its change means for the rows first; `shape` lets it compare what two
texts define besides their CHECKs, as SQLite itself reads them (in a scratch in-memory database,
before anything is written); `write` writes, then has SQLite read each new text. Used by migrations
0018 and 0019."""
from __future__ import annotations

import sqlite3

from batch.store.db import MigrationRefused

__all__ = ["shape", "write"]


def shape(table: str, sql: str) -> tuple[list, list, list]:
    """(columns, foreign keys, indexes with their columns) that the CREATE TABLE `sql` defines."""
    scratch = sqlite3.connect(":memory:")
    try:
        scratch.execute(sql)
        indexes = [row[1:] + (scratch.execute(f'PRAGMA index_info("{row[1]}")').fetchall(),)
                   for row in scratch.execute(f'PRAGMA index_list("{table}")')]
        return (scratch.execute(f'PRAGMA table_xinfo("{table}")').fetchall(),
                scratch.execute(f'PRAGMA foreign_key_list("{table}")').fetchall(), sorted(indexes))
    finally:
        scratch.close()


def write(conn, changes: list[tuple[str, str, str]]) -> None:
    """Store each (table, old text, new text) in the open transaction of `conn` (a SQLAlchemy
    connection); a table whose stored text is no longer `old` stops it (MigrationRefused, and the
    migration's transaction rolls back)."""
    if not changes:
        return
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        for name, old, new in changes:
            n = conn.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ? AND sql = ?",
                                     (new, name, old)).rowcount
            if n != 1:
                raise MigrationRefused(f"{name}: its stored CREATE TABLE changed meanwhile; nothing written")
        conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.exec_driver_sql("PRAGMA writable_schema = OFF")
    for name, _old, _new in changes:  # SQLite reads the new text now: an error rolls it all back
        conn.exec_driver_sql(f'SELECT * FROM "{name}" LIMIT 0').all()
