"""The run lock: one nightly (or returns-poll) run at a time, across hosts.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) taken on a dedicated connection
that is held for the whole run. The server releases it when that connection ends, so a run killed
by SIGKILL, the OOM killer or a power cut never leaves a stale lock, and every host that shares the
database shares the lock.

SQLite: an exclusive `flock` on a file beside the database (`<db>.nightly.lock`), for the same
reason: the kernel drops it when the process dies, so there is no lease to tune, no clock to trust
and no risk of taking over from a run that is slow but alive (which a lock row with a heartbeat
would have to guess at). A host-local lock is the whole scope needed: SQLite itself only works on
one host (its own locking is unreliable on network file systems), so two hosts cannot share one.

Either way the lock is tried, never waited for: a second run is told at once who holds it. The
holder also records itself in `run_locks` (host, pid, since, heartbeat) so that the message and
`achbatch status` can say "held since ..."; that row is a description, not the lock.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .models import RunLockHolder, utcnow

__all__ = ["LOCK_KEYS", "Holder", "LockHeld", "RunLock", "lock_file_for", "lock_is_held", "read_holder"]

# One lock for every kind of run (nightly and the returns poll): they touch the same tables.
LOCK_KEYS = {"nightly": 0x41434842_4E495445 & 0x7FFFFFFFFFFFFFFF,  # "ACHBNITE"
             # Origination (batch/collect/origination.py), standalone or inside a night: held from
             # the outbox repair to the last rename, so no other run takes our temporary files for
             # leftovers of a crash.
             "originate": 0x41434842_4F555442 & 0x7FFFFFFFFFFFFFFF}  # "ACHBOUTB" (not origination's own "ACHBORIG")


@dataclass
class Holder:
    """Who holds the lock, as far as it can be known."""

    host: str | None = None
    pid: int | None = None
    since: datetime | None = None
    run_id: int | None = None
    heartbeat_at: datetime | None = None

    def describe(self) -> str:
        bits = []
        if self.since is not None:
            bits.append(f"since {self.since.isoformat(timespec='seconds')}")
        else:
            bits.append("since an unknown time (the holder has not recorded itself yet)")
        who = []
        if self.run_id is not None:
            who.append(f"run {self.run_id}")
        if self.host:
            who.append(f"host {self.host}")
        if self.pid is not None:
            who.append(f"pid {self.pid}")
        if who:
            bits.append(f"({', '.join(who)})")
        return " ".join(bits)

    def as_dict(self) -> dict:
        return {"host": self.host, "pid": self.pid, "run_id": self.run_id,
                "since": self.since.isoformat() if self.since else None,
                "heartbeat_at": self.heartbeat_at.isoformat() if self.heartbeat_at else None}


class LockHeld(Exception):
    """Another run holds the lock; nothing was done."""

    def __init__(self, holder: Holder):
        self.holder = holder
        super().__init__(f"another run holds the lock {holder.describe()}")


def lock_file_for(engine: Engine, name: str = "nightly") -> Path | None:
    """The flock file of a SQLite database (None for PostgreSQL or an in-memory database)."""
    if engine.dialect.name != "sqlite":
        return None
    db = engine.url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    p = Path(db).expanduser()
    return p.with_name(p.name + f".{name}.lock")


class RunLock:
    """`with RunLock(engine) as lock:` holds the run lock for the block or raises LockHeld.

    `record(run_id)` writes the holder row once the run is recorded; `heartbeat()` refreshes it
    (called at each step); leaving the block releases the lock and marks the row released."""

    def __init__(self, engine: Engine, name: str = "nightly", *, host: str | None = None, pid: int | None = None):
        self.engine = engine
        self.name = name
        self.key = LOCK_KEYS[name]
        self.host = host or socket.gethostname()
        self.pid = pid or os.getpid()
        self.since: datetime | None = None
        self._conn = None
        self._fd: int | None = None

    # -- acquire / release ------------------------------------------------------------------------
    def acquire(self) -> "RunLock":
        if self.engine.dialect.name == "postgresql":
            self._acquire_pg()
        else:
            self._acquire_file()
        self.since = utcnow()
        return self

    def _acquire_pg(self) -> None:
        # Its own connection, in autocommit: the lock belongs to the session and must outlive every
        # transaction of the run (it is not a transaction-scoped lock).
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            conn.execute(text("SELECT set_config('application_name', :n, false)"),
                         {"n": f"achbatch {self.name} lock {self.host} pid {self.pid}"[:63]})
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            raise LockHeld(read_holder(self.engine, self.name))
        self._conn = conn

    def _acquire_file(self) -> None:
        path = lock_file_for(self.engine, self.name)
        if path is None:
            return  # in-memory database: nothing to share it with
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(read_holder(self.engine, self.name)) from None
        except BaseException:
            os.close(fd)
            raise
        # Who holds it, in the file too: readable even when the database is not (informational).
        info = json.dumps({"host": self.host, "pid": self.pid, "since": utcnow().isoformat()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        try:
            self._mark_released()
        finally:
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                except SQLAlchemyError:
                    pass  # the connection is gone: so is the lock
                finally:
                    self._conn.close()
                    self._conn = None
            if self._fd is not None:
                try:
                    os.ftruncate(self._fd, 0)
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                finally:
                    os.close(self._fd)
                    self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # -- the holder row ---------------------------------------------------------------------------
    def record(self, session: Session, run_id: int | None) -> None:
        """Describe this holder in `run_locks` (inside the caller's transaction)."""
        now = utcnow()
        row = session.get(RunLockHolder, self.name)
        if row is None:
            row = RunLockHolder(name=self.name, host=self.host, pid=self.pid, since=self.since or now,
                                heartbeat_at=now)
            session.add(row)
        row.run_id, row.host, row.pid = run_id, self.host, self.pid
        row.since, row.heartbeat_at, row.released_at = self.since or now, now, None

    def heartbeat(self, session: Session) -> None:
        row = session.get(RunLockHolder, self.name)
        if row is not None and row.pid == self.pid and row.host == self.host:
            row.heartbeat_at = utcnow()

    def _mark_released(self) -> None:
        if self.since is None:
            return
        try:
            with Session(self.engine) as s, s.begin():
                row = s.get(RunLockHolder, self.name)
                if row is not None and row.pid == self.pid and row.host == self.host and row.released_at is None:
                    row.released_at = utcnow()
        except SQLAlchemyError:
            pass  # informational only; the lock itself is released below


def read_holder(engine: Engine, name: str = "nightly") -> Holder:
    """What is known of the current holder: the `run_locks` row unless it says released, else the
    lock file (SQLite) or the holding backend (PostgreSQL)."""
    holder = Holder()
    try:
        with _reader(engine) as reader, Session(reader) as s:
            row = s.get(RunLockHolder, name)
            if row is not None and row.released_at is None:
                holder = Holder(row.host, row.pid, row.since, row.run_id, row.heartbeat_at)
    except SQLAlchemyError:
        pass  # schema missing or database busy: fall back to what the lock itself says
    if holder.since is not None:
        return holder
    path = lock_file_for(engine, name)
    if path is not None:
        try:
            info = json.loads(path.read_text() or "{}")
            return Holder(info.get("host"), info.get("pid"),
                          datetime.fromisoformat(info["since"]) if info.get("since") else None)
        except (OSError, ValueError):
            return holder
    if engine.dialect.name == "postgresql":
        pg = _pg_holder(engine, LOCK_KEYS[name])
        if pg is not None:
            return pg
    return holder


# Advisory locks belong to a database: another database on the same server has its own.
_THIS_DATABASE = " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"


def _pg_holder(engine: Engine, key: int) -> Holder | None:
    try:
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT a.application_name, a.pid, a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1" + _THIS_DATABASE),
                {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).first()
    except SQLAlchemyError:
        return None
    if row is None:
        return None
    return Holder(host=row.application_name or None, pid=None, since=row.backend_start)


def lock_is_held(engine: Engine, name: str = "nightly") -> bool | None:
    """Whether some process holds the lock now, without taking it (a status check must never make
    a starting run exit 3). PostgreSQL: pg_locks. SQLite: the holder row's pid on this host; None
    when it cannot be told."""
    if engine.dialect.name == "postgresql":
        key = LOCK_KEYS[name]
        try:
            with engine.connect() as conn:
                return bool(conn.execute(text(
                    "SELECT count(*) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1" + _THIS_DATABASE),
                    {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar())
        except SQLAlchemyError:
            return None
    try:
        with _reader(engine) as reader, Session(reader) as s:
            row = s.execute(select(RunLockHolder).where(RunLockHolder.name == name)).scalar_one_or_none()
    except SQLAlchemyError:
        return None
    if row is None or row.released_at is not None:
        return False
    if row.host != socket.gethostname():
        return None
    return _pid_alive(row.pid)


@contextmanager
def _reader(engine: Engine) -> Iterator[Engine]:
    """An engine for reading without taking SQLite's write lock (the writer's engines begin
    IMMEDIATE): a contender or a status check must not queue behind a running night."""
    if engine.dialect.name != "sqlite":
        yield engine
        return
    reader = create_engine(engine.url, connect_args={"timeout": 5})
    try:
        yield reader
    finally:
        reader.dispose()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
