"""Database access: engine and session factory from a URL (SQLite or PostgreSQL via psycopg 3), and
the schema migrations (Alembic, shipped inside this package) run programmatically.
Nothing is built at import time."""
from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, bindparam, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean, Date, Enum as SAEnum, Integer, LargeBinary, String, TypeDecorator, UserDefinedType

__all__ = [
    "MIGRATIONS_DIR", "DatabaseError", "DatabaseUnavailable", "MigrationRefused", "SchemaError", "alembic_config",
    "current_revision", "current_revision_or_raise",
    "head_revision", "make_engine", "make_sessionmaker", "normalize_url", "open_database",
    "brief", "bulk_insert", "configuration_problem", "copy_rows", "custom_plans", "in_set", "require_current_schema",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30


class DatabaseError(Exception):
    """The database URL is unusable or the database cannot be reached."""


class SchemaError(DatabaseError):
    """The database schema is missing or not at the revision this code expects."""


class MigrationRefused(DatabaseError):
    """A migration found the database not as it can carry it over (a stored schema it does not
    expect, rows its new rule would refuse) and stopped: the upgrade's transaction is rolled back,
    schema and rows as they were. The message says what to look at."""


class DatabaseUnavailable(DatabaseError):
    """The database could not be reached (server down, refused, timed out): worth retrying."""


# SQLSTATEs of a database that cannot work as configured, however often it is retried: no such
# database (invalid_catalog_name), login refused (invalid_password, invalid_authorization_specification).
_CONFIG_SQLSTATES = {"3D000": "the database does not exist", "28P01": "login refused",
                     "28000": "login refused"}


def configuration_problem(e: BaseException) -> str | None:
    """What is wrong when a database error is a configuration problem (exit 2, not 75): the
    database does not exist or the login is refused; None otherwise."""
    orig = getattr(e, "orig", None) or e
    state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    if state in _CONFIG_SQLSTATES:
        return _CONFIG_SQLSTATES[state]
    text = str(orig)
    if "does not exist" in text and "database" in text:  # the server's own words, when no SQLSTATE came
        return _CONFIG_SQLSTATES["3D000"]
    return None


def brief(e: BaseException) -> str:
    """One line for a database error: the driver's first line, without SQLAlchemy's statement and
    parameters or its background link."""
    return _brief(e)


def copy_rows(conn, table: str, columns, rows) -> None:
    """PostgreSQL only: stream `rows` (sequences in `columns` order) into `table` with COPY on the
    transaction's own connection; several times faster than executemany for 100,000s of rows.

    In COPY's binary format when every column is of a type whose binary form psycopg writes from
    the Python value the column's bind processor gives (`_BINARY_COPY_TYPES`): formatting the rows
    as text cost about 4x as much (a timestamp with its zone, bytea escaped as hex; 100,000 rows of
    seven columns: 0.21 s as text, 0.05 s binary, measured). Otherwise as text."""
    raw = conn.connection.driver_connection
    columns = tuple(columns)
    types = _binary_copy_types(raw, table, columns)
    fmt = " (FORMAT BINARY)" if types else ""
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN{fmt}") as copy:
        if types:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)


# The column types COPY may take in binary from the values achbatch binds (bind processors give
# int, str, bytes, date, aware datetime, bool): the server checks each binary value's length and
# form, so a value of the wrong type is refused, never misread.
_BINARY_COPY_TYPES = frozenset({"int2", "int4", "int8", "text", "varchar", "bytea", "date", "timestamptz",
                                "bool"})
_COPY_TYPES: dict[tuple, tuple[str, ...] | None] = {}


def _binary_copy_types(raw, table: str, columns: tuple[str, ...]) -> tuple[str, ...] | None:
    """The server's type names of `columns` of `table` when all of them can be copied in binary,
    else None; asked once per database, table and columns in a process."""
    info = raw.info
    key = (info.host, info.port, info.dbname, table, columns)
    if key not in _COPY_TYPES:
        with raw.cursor() as cur:
            names = dict(cur.execute(
                "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped", (table,)).fetchall())
        types = tuple(names.get(c, "") for c in columns)
        _COPY_TYPES[key] = types if all(t in _BINARY_COPY_TYPES for t in types) else None
    return _COPY_TYPES[key]


_PROCESSORS: dict[tuple[int, str, str], Callable[[Any], Any] | None] = {}


def _processor(column, dialect) -> Callable[[Any], Any] | None:
    """The column type's own bind processor for `dialect` (the same conversion SQLAlchemy applies:
    e.g. a UTCDateTime's naive-refusal and UTC normalisation, SQLite's date and datetime text),
    built once per process."""
    key = (id(column.table), column.name, dialect.name)
    if key not in _PROCESSORS:
        # the dialect's own implementation of the type (e.g. SQLite's DATE and DATETIME text formats;
        # a TypeDecorator wrapped around it), as SQLAlchemy itself resolves it
        _PROCESSORS[key] = column.type.dialect_impl(dialect).bind_processor(dialect)
    return _PROCESSORS[key]


class _ValueSet(UserDefinedType):
    """The type of `in_set`'s one parameter: a list of values of `item_type`, each converted by that
    type's own bind processor, then bound as a JSON array text on SQLite (read by `json_each`). On
    PostgreSQL, strings, integers and dates are bound as the text of an array literal, cast to the
    column's type (`_ARRAY_LITERAL`); other types as a list (an array to psycopg)."""

    cache_ok = True

    def __init__(self, item_type):
        self.item_type = item_type

    def get_col_spec(self, **kw) -> str:  # never a column's type; only a parameter's
        return "TEXT"

    def literal_kind(self) -> str | None:
        """'str', 'int' or 'date' when PostgreSQL gets the values as an array literal, else None."""
        t = self.item_type
        if isinstance(t, TypeDecorator):
            return None
        if isinstance(t, String) and not isinstance(t, SAEnum):
            return None if t.collation else "str"  # (a COLLATE clause would not fit the array cast)
        if isinstance(t, Integer):
            return "int"
        if type(t) is Date:
            return "date"
        return None

    def bind_processor(self, dialect):
        item = self.item_type.dialect_impl(dialect).bind_processor(dialect)

        def items(values):
            return list(values) if item is None else [None if v is None else item(v) for v in values]

        if dialect.name == "postgresql":
            kind = self.literal_kind()
            if kind is None:
                return items
            literal = _ARRAY_LITERAL[kind]
            return lambda values: literal(items(values))
        import json

        return lambda values: json.dumps(items(values))


def _str_array(values: list) -> str:
    """A PostgreSQL array literal of strings (None: NULL): each element double-quoted, `"` and `\\`
    escaped, so any text, even empty, 'NULL', with commas, braces or spaces, is read back as itself."""
    if None in values:
        return "{" + ",".join("NULL" if v is None else _quoted(v) for v in values) + "}"
    raw = "".join(values)
    if '"' in raw or "\\" in raw:
        return "{" + ",".join(map(_quoted, values)) + "}"
    return '{"' + '","'.join(values) + '"}' if values else "{}"


def _quoted(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _plain_array(values: list) -> str:
    """Integers or dates (ISO text): nothing to quote."""
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


# psycopg adapts a list of 5,000 strings in about 12 ms (each element dumped on its own); the text of
# an array literal is built in about 1 ms and read by the server in 2-3 ms (measured; a look-up of
# 5,000 account hashes in 1,000,000 accounts: 31 ms -> 19 ms). Integers: 2.3 ms -> 0.25 ms.
_ARRAY_LITERAL = {"str": _str_array, "int": _plain_array, "date": _plain_array}


class in_set(ColumnElement):  # noqa: N801 - used as a function, like sqlalchemy's own
    """`column IN (values)` bound as ONE parameter whatever the number of values: on PostgreSQL
    `column = ANY(:array)`, on SQLite `column IN (SELECT value FROM json_each(:json))`. The same SQL
    for any number of values (compiled once and cached; no bind name per value), each side served by
    the column's index. Values are converted by the column type's bind processor (dates as SQLite
    stores them)."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a predicate: no "= 1" appended where booleans are not native
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("values", InternalTraversal.dp_clauseelement)]

    def __init__(self, column, values):
        self.column = column
        self.values = bindparam(None, value=list(values), type_=_ValueSet(column.type))


@compiles(in_set)
def _in_set_json(element, compiler, **kw):  # SQLite, and the default (e.g. str() of a statement)
    return (f"{compiler.process(element.column, **kw)} IN "
            f"(SELECT value FROM json_each({compiler.process(element.values, **kw)}))")


@compiles(in_set, "postgresql")
def _in_set_any(element, compiler, **kw):
    column, values = compiler.process(element.column, **kw), compiler.process(element.values, **kw)
    value_set = element.values.type
    if value_set.literal_kind() is not None:  # the text of an array literal: cast to the column's type
        array = compiler.dialect.type_compiler_instance.process(value_set.item_type) + "[]"
        return f"{column} = ANY(CAST({values} AS {array}))"
    return f"{column} = ANY({values})"


def custom_plans(conn) -> None:
    """PostgreSQL: every statement of the open transaction planned with its own values
    (`plan_cache_mode = force_custom_plan`, transaction-local). psycopg prepares a statement run
    five times, and PostgreSQL may then switch to a generic plan in which a bound list stays a
    parameter, compared element by element on every row instead of through a hash of the list:
    a returns file's look-up of earlier returns (`debit_guard.prior_returns`) took 0.56 s a
    statement that way, 22 s for 100,000 returns; planned with its values, 3.2 s (returns process
    43-50 s -> 31 s, bench_returns). Not for every connection: the same setting made originate and
    the imports 20-40% slower at 100,000 (measured), whose repeated look-ups do well generic."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")


def bulk_insert(conn, table, rows: list[dict[str, Any]] | list[tuple], names: list[str] | None = None) -> None:
    """Insert `rows` (dicts naming the same columns of the Core `table`; or, with `names`, tuples
    of values in the order of `names`) on the transaction of the SQLAlchemy connection `conn`, as
    one driver-level bulk load: COPY on PostgreSQL, one prepared INSERT run by the driver's
    `executemany` on SQLite. Values are converted by each column's own bind processor (a value
    repeated across rows, such as a chunk's timestamp, converted once).

    Several times faster than `session.execute(insert(Model), rows)`, which builds every row's
    parameters through the ORM and the statement's compiled form. Nothing is filled in: a column
    not named gets its server default or NULL, so a column with a Python-side default must be named
    (ValueError otherwise). Constraints apply as for any insert (an IntegrityError rolls back the
    transaction); nothing is returned (select the ids back by a unique key when needed)."""
    if not rows:
        return
    as_dicts = names is None
    names = list(rows[0]) if as_dicts else list(names)
    columns = [table.c[name] for name in names]
    missing = [c.name for c in table.columns if c.name not in names and c.default is not None
               and not (c.default.is_scalar and c.default.arg is None)]
    if missing:
        raise ValueError(f"bulk_insert into {table.name}: name the columns with Python defaults: {', '.join(missing)}")
    dialect = conn.dialect
    procs, once = [], []  # (index, processor): every value converted / each distinct value converted once
    for i, column in enumerate(columns):
        proc = _processor(column, dialect)
        if proc is not None:
            # a binary value (an encrypted account number) is new on every row: nothing to remember
            (procs if isinstance(column.type, LargeBinary) else once).append((i, proc, {}))
    if procs or once:
        def convert(row) -> list[Any]:
            values = [row[n] for n in names] if as_dicts else list(row)
            for i, proc, seen in once:
                v = values[i]
                if v is not None:
                    try:
                        c = seen.get(v, seen)
                    except TypeError:  # unhashable (a JSON value): converted each time
                        values[i] = proc(v)
                        continue
                    values[i] = seen.setdefault(v, proc(v)) if c is seen else c
            for i, proc, _ in procs:
                v = values[i]
                if v is not None:
                    values[i] = proc(v)
            return values
    elif as_dicts:
        def convert(row) -> list[Any]:
            return [row[n] for n in names]
    else:
        def convert(row):
            return row
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    try:
        if dialect.name == "postgresql":
            copy_rows(conn, table.name, names, (convert(r) for r in rows))
            return
        cur = conn.connection.driver_connection.cursor()
        try:
            cur.executemany(sql, [convert(r) for r in rows])
        finally:
            cur.close()
    except dialect.loaded_dbapi.Error as e:
        # the driver's own error, as SQLAlchemy would have raised it (IntegrityError, OperationalError,
        # ...): callers tell a concurrent import or a lost connection apart by these classes
        raise DBAPIError.instance(sql, None, e, dialect.loaded_dbapi.Error) from e


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here (SQLAlchemy alone would pick psycopg2,
    which is not installed); SQLite and fully qualified URLs are kept as given."""
    try:
        u = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"not a database URL: {url!r}") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif u.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise DatabaseError(f"unsupported database {u.drivername!r}: use sqlite:///PATH or "
                            "postgresql+psycopg://USER@HOST/DB")
    return u.render_as_string(hide_password=False)


def make_engine(url: str, *, sqlite_immediate: bool = True, echo: bool = False, create: bool = True,
                **kwargs) -> Engine:
    """An engine for `url`.

    `create=False`: a SQLite file that does not exist is not created (nor its folder): SchemaError
    saying to run `achbatch db upgrade` (a command that only uses a database must not leave an empty
    one behind).

    PostgreSQL: JIT compilation off on every connection (`_postgresql_session`).

    SQLite: the parent folder is created; foreign keys are enforced, the journal is WAL (readers do
    not block the writer), `synchronous=FULL` (a committed ledger row survives a power cut), and a
    30 s busy timeout. Transactions are begun by SQLAlchemy rather than lazily by the sqlite3
    module, so a read inside a transaction is really inside it; with `sqlite_immediate` (the
    default) they start as `BEGIN IMMEDIATE`, taking the write lock up front, so two writers
    serialize instead of failing mid-transaction.
    """
    url = normalize_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if (not create and u.database and u.database != ":memory:" and not u.database.startswith("file:")
                and not Path(u.database).expanduser().exists()):
            raise SchemaError(f"there is no database at {Path(u.database).expanduser()} (paths are relative to "
                              "the current folder): run `achbatch db upgrade` to create it")
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            # 0700 when we create it: the database holds member names (account numbers only encrypted)
            db_path = Path(u.database).expanduser()
            db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create_private(db_path)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
        engine = create_engine(url, echo=echo, connect_args=connect_args, **kwargs)
        begin = "BEGIN IMMEDIATE" if sqlite_immediate else "BEGIN"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # no implicit BEGIN from the driver (see "begin")
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql(begin)

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, echo=echo, **kwargs)
    if u.get_backend_name() == "postgresql":
        event.listen(engine, "connect", _postgresql_session)
    return engine


def _postgresql_session(dbapi_conn, _record) -> None:
    """Every PostgreSQL connection: no JIT compilation. The night's set-based statements and long
    `= ANY(array)` look-ups are estimated far above the JIT thresholds and spent more compiling
    (0.2-1.2 s a statement, measured with EXPLAIN ANALYZE) than their run could gain; achbatch runs
    no analytical query that JIT would pay for. Session-level, so a pooled connection keeps it."""
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True  # a SET outside any transaction: nothing left open
    try:
        with dbapi_conn.cursor() as cur:
            cur.execute("SET jit = off")
    finally:
        dbapi_conn.autocommit = autocommit


def _create_private(path: Path) -> None:
    """Create the SQLite database file 0600 before SQLite does (it would use 0644 under the usual
    umask); SQLite gives its -wal and -shm files the database file's mode. An empty file is an
    empty database. An existing file is left as it is."""
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # a folder we cannot write to: SQLite reports it when it opens the file
    os.close(fd)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (results outlive their transaction)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def open_database(url: str, *, check_schema: bool = True, **engine_kwargs) -> Iterator[sessionmaker[Session]]:
    """A session factory for `url` (schema checked to be current, and a SQLite file never created),
    disposed of on exit."""
    if check_schema:
        engine_kwargs.setdefault("create", False)
    engine = make_engine(url, **engine_kwargs)
    try:
        if check_schema:
            require_current_schema(engine)
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


# -- migrations ------------------------------------------------------------------------------------

def alembic_config(url: str | None = None):
    """An Alembic Config pointing at the migrations shipped in this package (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


_REVISION_LINE = re.compile(r"^revision\s*(?::[^=]*)?=\s*(.+?)\s*(?:#.*)?$", re.M)
_DOWN_REVISION_LINE = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+?)\s*(?:#.*)?$", re.M)
_QUOTED = re.compile(r"""["']([A-Za-z0-9_]+)["']""")


def _head_from_files() -> str | None:
    """The head revision read from the shipped migration files' `revision = "..."` and
    `down_revision = "..."` lines, without importing Alembic (its script directory costs a tenth of
    a second at every start): the one revision no file names as its down revision. None when the
    files do not say it plainly (a merge's tuple, several heads, another form): Alembic decides."""
    revisions, downs = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        if path.name == "__init__.py":
            continue
        text = path.read_text(encoding="utf-8")
        rev, down = _REVISION_LINE.search(text), _DOWN_REVISION_LINE.search(text)
        if rev is None or down is None or not (r := _QUOTED.fullmatch(rev.group(1))):
            return None
        if down.group(1) != "None":
            d = _QUOTED.fullmatch(down.group(1))
            if d is None:
                return None
            downs.add(d.group(1))
        revisions.add(r.group(1))
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def head_revision() -> str:
    fast = _head_from_files()
    if fast is not None:
        return fast
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision recorded in `alembic_version` (None: no schema yet), read with one query
    (Alembic's migration context is imported only for what that cannot tell: several rows)."""
    from sqlalchemy import inspect

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
        if len(rows) <= 1:
            return rows[0] if rows else None
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()


def require_current_schema(engine: Engine) -> None:
    """Raise SchemaError unless the schema is at the head revision of the shipped migrations."""
    current = _current_or_raise(engine)
    head = head_revision()
    if current is None:
        raise SchemaError("the database has no achbatch schema yet: run `achbatch db upgrade`")
    if current != head:
        raise SchemaError(f"the database schema is at revision {current}, this achbatch expects {head}: "
                          "run `achbatch db upgrade`")


def upgrade(url: str, revision: str = "head", *, log: Callable[[str], None] | None = None) -> tuple[str | None, str]:
    """Create or migrate the schema to `revision`; returns (revision before, revision after).
    Idempotent: at head already, nothing happens."""
    from alembic import command

    engine = make_engine(url)
    try:
        before = _current_or_raise(engine)
        cfg = alembic_config(url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            cfg.attributes["log"] = log
            command.upgrade(cfg, revision)
        after = current_revision(engine)
        return before, after or ""
    finally:
        engine.dispose()


def current_revision_or_raise(engine: Engine) -> str | None:
    """The schema revision (None: no schema yet); DatabaseUnavailable / DatabaseError, with a
    one-line message, when the database cannot be read."""
    return _current_or_raise(engine)


def _current_or_raise(engine: Engine) -> str | None:
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    try:
        return current_revision(engine)
    except OperationalError as e:  # refused, timed out, no such database, bad credentials, ...
        where = engine.url.render_as_string(hide_password=True)
        problem = configuration_problem(e)
        if problem is not None:  # retrying cannot help: a person must act
            raise DatabaseError(f"cannot open the database {where}: {problem} ({_brief(e)})") from None
        raise DatabaseUnavailable(f"cannot open the database {where}: {_brief(e)}") from None
    except SQLAlchemyError as e:
        raise DatabaseError(f"cannot open the database: {_brief(e)}") from None


def _brief(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return text[0] if text else type(e).__name__
