"""CHECK constraints of value lists written as equalities (SQLite): `channel IN ('portal', 'guest')`
becomes `(channel = 'portal' OR channel = 'guest')`, and `status NOT IN (...)` becomes
`NOT (status = ... OR ...)`. The same rule: the same values pass, the same are refused, and NULL
gives NULL in both forms (which a CHECK lets pass, as before).

Why: SQLite codes an IN list of more than two constants as a look-up table that it fills at every
execution of the statement, and executemany, how the imports and the night's bulk loads write on
SQLite, executes its INSERT once per row. Every row of `payments` filled four such tables (channel,
state, SEC code, payment type); 100,000 payments took 1.04 s to insert, 0.40 s with equalities,
0.38 s with no CHECK at all (measured on the table's own DDL, executemany in chunks of 5,000).

How: SQLite cannot ALTER a CHECK, and rebuilding every table that has one would copy every row of
the largest tables. The rows on disk do not change, so the stored CREATE TABLE text is rewritten in
place, as SQLite documents for changing constraints (batch/store/migrations/sqlite_schema.py).
Each table is changed only when:
- writing the lists back (`_in_lists`) gives exactly the text it had: nothing else was touched;
- the new text, created in a scratch in-memory database, has the same columns, primary key,
  unique constraints and foreign keys as the old;
- every stored row gives the same result under each rewritten list as under the list it replaces
  (`SELECT count(*) ... WHERE old IS NOT new` is 0), checked before anything is written.
Otherwise the migration stops, nothing written. The whole upgrade runs in one transaction.

PostgreSQL evaluates an IN list against its constant array without building anything per row: its
constraints stay as they are (it prints them as `= ANY (ARRAY[...])`); nothing to do there.

Downgrading writes the IN lists back in the text the earlier migrations wrote (their own downgrades
look for that text).

Revision ID: 0018_check_equalities
Revises: 0017_update_room
Create Date: 2026-12-06
"""
from __future__ import annotations

import re

from alembic import op

from batch.store.db import MigrationRefused
from batch.store.migrations import sqlite_schema

revision = "0018_check_equalities"
down_revision = "0017_update_room"
branch_labels = None
depends_on = None

_VALUE = r"'(?:[^']|'')*'"
# `col IN ('a', 'b', ...)` or `col NOT IN (...)`: two values or more, as the migrations wrote them
_IN_LIST = re.compile(rf"\b(\w+) (NOT )?IN \(({_VALUE}(?:, {_VALUE})+)\)")
# what `_equalities` makes of one: `(col = 'a' OR col = 'b' ...)`, `NOT (...)` for NOT IN
_OR_CHAIN = re.compile(rf"(NOT )?\((\w+) = ({_VALUE}(?: OR \2 = {_VALUE})+)\)")


def _equalities(sql: str) -> str:
    def chain(m: re.Match) -> str:
        column, negated, values = m.group(1), m.group(2), re.findall(_VALUE, m.group(3))
        text = "(" + " OR ".join(f"{column} = {v}" for v in values) + ")"
        return "NOT " + text if negated else text
    return _IN_LIST.sub(chain, sql)


def _in_lists(sql: str) -> str:
    def in_list(m: re.Match) -> str:
        negated, column = m.group(1), m.group(2)
        values = re.findall(_VALUE, m.group(3))
        return f"{column} {'NOT ' if negated else ''}IN ({', '.join(values)})"
    return _OR_CHAIN.sub(in_list, sql)


def _pairs(sql: str) -> list[tuple[str, str]]:
    """(IN list, its equalities) of each list `_equalities` rewrites in `sql`."""
    return [(m.group(0), _equalities(m.group(0))) for m in _IN_LIST.finditer(sql)]


def _rewrite(transform, inverse, check_rows: bool) -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    tables = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL ORDER BY name").all()
    changes = []
    for name, sql in tables:
        new = transform(sql)
        if new == sql:
            continue
        if inverse(new) != sql:
            raise MigrationRefused(f"migration 0018: table {name}: its stored CREATE TABLE is not as this migration "
                                   f"expects; nothing changed (its text: {sql!r})")
        if sqlite_schema.shape(name, new) != sqlite_schema.shape(name, sql):
            raise MigrationRefused(f"migration 0018: table {name}: rewritten, its CREATE TABLE would define other "
                                   f"columns or keys; nothing changed (the new text: {new!r})")
        if check_rows:
            for old_expr, new_expr in _pairs(sql):
                differ = conn.exec_driver_sql(
                    f'SELECT count(*) FROM "{name}" WHERE ({old_expr}) IS NOT ({new_expr})').scalar_one()
                if differ:
                    raise MigrationRefused(f"migration 0018: table {name}: {differ} rows judge {old_expr} and "
                                           f"{new_expr} differently; nothing changed")
        changes.append((name, sql, new))
    sqlite_schema.write(conn, changes)


def upgrade() -> None:
    _rewrite(_equalities, _in_lists, check_rows=True)


def downgrade() -> None:
    _rewrite(_in_lists, _equalities, check_rows=False)
